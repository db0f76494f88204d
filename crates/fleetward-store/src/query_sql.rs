//! Translates a target query into a SQL predicate over `devices d`.
//!
//! Every value is a bound parameter, never spliced into the text. The SQL is
//! the subset SQLite and PostgreSQL share, so both adapters use this one
//! translation. Tag tests become `d.seq IN (SELECT … FROM device_tags …)`,
//! which both databases answer from the `(key, value, device_seq)` index
//! without visiting devices that lack the tag.
//!
//! Unknown values are never silently true or false in SQL's three-valued
//! logic: a device without a version matches no `version` comparison, and
//! therefore does match its negation.
//!
//! A tag test can be written two ways, and the fast one depends on the rest
//! of the query (measured on a million devices, see BENCHMARKS.md):
//! `d.seq IN (SELECT … FROM device_tags …)` lets the database start from the
//! tag index, which is what a query made only of tags needs, while
//! `EXISTS (… WHERE t.device_seq = d.seq …)` probes each candidate through
//! the primary key, which is far cheaper once an indexed device column
//! (hardware, id) has already narrowed the set, and lets a page walk the id
//! order and stop after its first rows. [`TagForm::for_query`] picks.

use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_core::version;
use sqlx::{Database, Encode, QueryBuilder, Type};

/// Where translated SQL goes: an sqlx `QueryBuilder` (either dialect), or
/// [`PlainSql`] for the SQLite read connections.
pub(crate) trait SqlSink {
    fn push(&mut self, sql: &str);
    fn push_bind(&mut self, value: String);
}

impl<'a, DB> SqlSink for QueryBuilder<'a, DB>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    fn push(&mut self, sql: &str) {
        QueryBuilder::push(self, sql);
    }
    fn push_bind(&mut self, value: String) {
        QueryBuilder::push_bind(self, value);
    }
}

/// SQLite SQL text with `?` placeholders and the values to bind, in order.
#[derive(Debug, Default)]
pub(crate) struct PlainSql {
    pub sql: String,
    pub params: Vec<String>,
}

impl SqlSink for PlainSql {
    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }
    fn push_bind(&mut self, value: String) {
        self.sql.push('?');
        self.params.push(value);
    }
}

/// How tag tests are written; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagForm {
    InList,
    Exists,
}

impl TagForm {
    /// `Exists` when a conjunct at the top of the query selects on an
    /// indexed device column, `InList` otherwise.
    pub(crate) fn for_query(expr: &Expr) -> TagForm {
        fn narrows(expr: &Expr) -> bool {
            match expr {
                Expr::And(left, right) => narrows(left) || narrows(right),
                Expr::Compare {
                    field: Field::Hardware | Field::Id,
                    op: CompareOp::Eq,
                    ..
                }
                | Expr::In {
                    field: Field::Hardware | Field::Id,
                    ..
                } => true,
                _ => false,
            }
        }
        if narrows(expr) {
            TagForm::Exists
        } else {
            TagForm::InList
        }
    }
}

/// Opens a test on the tags with key `key`; the caller adds conditions on
/// `t.value` and closes the parenthesis.
fn open_tag_test(qb: &mut impl SqlSink, form: TagForm, key: &str) {
    match form {
        TagForm::InList => {
            qb.push("d.seq IN (SELECT t.device_seq FROM device_tags t WHERE t.key = ");
        }
        TagForm::Exists => {
            qb.push("EXISTS (SELECT 1 FROM device_tags t WHERE t.device_seq = d.seq AND t.key = ");
        }
    }
    qb.push_bind(key.to_owned());
}

pub(crate) fn push_predicate(qb: &mut impl SqlSink, expr: &Expr, form: TagForm) {
    match expr {
        Expr::And(left, right) => push_binary(qb, left, "AND", right, form),
        Expr::Or(left, right) => push_binary(qb, left, "OR", right, form),
        Expr::Not(inner) => {
            qb.push("(NOT ");
            push_predicate(qb, inner, form);
            qb.push(")");
        }
        Expr::Has(key) => {
            open_tag_test(qb, form, key.as_str());
            qb.push(")");
        }
        Expr::Compare {
            field,
            op: CompareOp::Ne,
            value,
        } => {
            qb.push("(NOT ");
            push_compare(qb, field, CompareOp::Eq, value, form);
            qb.push(")");
        }
        Expr::Compare { field, op, value } => push_compare(qb, field, *op, value, form),
        Expr::In { field, values } => push_in(qb, field, values, form),
    }
}

fn push_binary(qb: &mut impl SqlSink, left: &Expr, op: &str, right: &Expr, form: TagForm) {
    qb.push("(");
    push_predicate(qb, left, form);
    qb.push(" ");
    qb.push(op);
    qb.push(" ");
    push_predicate(qb, right, form);
    qb.push(")");
}

fn sql_op(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    }
}

/// The literal as the column it is compared with stores it.
fn column_value(field: &Field, value: &Value) -> String {
    match field {
        Field::Version => version::sort_key(value.as_str()),
        _ => value.as_str().to_owned(),
    }
}

fn push_compare(qb: &mut impl SqlSink, field: &Field, op: CompareOp, value: &Value, form: TagForm) {
    let bound = column_value(field, value);
    match column(field) {
        Column::Tag(key) => {
            open_tag_test(qb, form, key);
            qb.push(" AND t.value ");
            qb.push(sql_op(op));
            qb.push(" ");
            qb.push_bind(bound);
            qb.push(")");
        }
        Column::VersionKey => {
            qb.push("(d.version_key IS NOT NULL AND d.version_key ");
            qb.push(sql_op(op));
            qb.push(" ");
            qb.push_bind(bound);
            qb.push(")");
        }
        Column::Plain(column) => {
            qb.push(column);
            qb.push(" ");
            qb.push(sql_op(op));
            qb.push(" ");
            qb.push_bind(bound);
        }
    }
}

fn push_in(qb: &mut impl SqlSink, field: &Field, values: &[Value], form: TagForm) {
    let push_list = |qb: &mut dyn SqlSink| {
        qb.push("(");
        for (n, value) in values.iter().enumerate() {
            if n > 0 {
                qb.push(", ");
            }
            qb.push_bind(column_value(field, value));
        }
        qb.push(")");
    };
    match column(field) {
        Column::Tag(key) => {
            open_tag_test(qb, form, key);
            qb.push(" AND t.value IN ");
            push_list(qb);
            qb.push(")");
        }
        Column::VersionKey => {
            qb.push("(d.version_key IS NOT NULL AND d.version_key IN ");
            push_list(qb);
            qb.push(")");
        }
        Column::Plain(column) => {
            qb.push(column);
            qb.push(" IN ");
            push_list(qb);
        }
    }
}

/// Where a field lives in the schema.
enum Column<'e> {
    /// A column of `devices d`, compared as stored.
    Plain(&'static str),
    /// `d.version_key`, compared by version order.
    VersionKey,
    /// A row of `device_tags` with this key.
    Tag(&'e str),
}

fn column(field: &Field) -> Column<'_> {
    match field {
        Field::Id => Column::Plain("d.id"),
        Field::Hardware => Column::Plain("d.hardware"),
        Field::Status => Column::Plain("d.status"),
        Field::Version => Column::VersionKey,
        Field::Tag(key) => Column::Tag(key.as_str()),
    }
}
