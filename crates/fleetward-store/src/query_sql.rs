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

use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_core::version;
use sqlx::{Database, Encode, QueryBuilder, Type};

pub(crate) fn push_predicate<'a, DB>(qb: &mut QueryBuilder<'a, DB>, expr: &Expr)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    match expr {
        Expr::And(left, right) => push_binary(qb, left, "AND", right),
        Expr::Or(left, right) => push_binary(qb, left, "OR", right),
        Expr::Not(inner) => {
            qb.push("(NOT ");
            push_predicate(qb, inner);
            qb.push(")");
        }
        Expr::Has(key) => {
            qb.push("d.seq IN (SELECT t.device_seq FROM device_tags t WHERE t.key = ");
            qb.push_bind(key.as_str().to_owned());
            qb.push(")");
        }
        Expr::Compare {
            field,
            op: CompareOp::Ne,
            value,
        } => {
            qb.push("(NOT ");
            push_compare(qb, field, CompareOp::Eq, value);
            qb.push(")");
        }
        Expr::Compare { field, op, value } => push_compare(qb, field, *op, value),
        Expr::In { field, values } => push_in(qb, field, values),
    }
}

fn push_binary<'a, DB>(qb: &mut QueryBuilder<'a, DB>, left: &Expr, op: &str, right: &Expr)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    qb.push("(");
    push_predicate(qb, left);
    qb.push(" ");
    qb.push(op);
    qb.push(" ");
    push_predicate(qb, right);
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

fn push_compare<'a, DB>(qb: &mut QueryBuilder<'a, DB>, field: &Field, op: CompareOp, value: &Value)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    let bound = column_value(field, value);
    match column(field) {
        Column::Tag(key) => {
            qb.push("d.seq IN (SELECT t.device_seq FROM device_tags t WHERE t.key = ");
            qb.push_bind(key.to_owned());
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

fn push_in<'a, DB>(qb: &mut QueryBuilder<'a, DB>, field: &Field, values: &[Value])
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    let push_list = |qb: &mut QueryBuilder<'a, DB>| {
        qb.push("(");
        let mut list = qb.separated(", ");
        for value in values {
            list.push_bind(column_value(field, value));
        }
        qb.push(")");
    };
    match column(field) {
        Column::Tag(key) => {
            qb.push("d.seq IN (SELECT t.device_seq FROM device_tags t WHERE t.key = ");
            qb.push_bind(key.to_owned());
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
