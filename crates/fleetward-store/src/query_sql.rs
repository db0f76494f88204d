//! Translates a target query into a SQL predicate over `devices d`, and
//! builds the listing statements both adapters run.
//!
//! Every value is a bound parameter, never spliced into the text. The SQL is
//! the subset SQLite and PostgreSQL share, so both adapters use this one
//! translation; where the dialects differ (placeholders `?` against `$n`,
//! the JSON aggregate that folds a device's tags into its row) [`Dialect`]
//! says which to write. Tag tests become `d.seq IN (SELECT … FROM device_tags …)`,
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

use fleetward_core::DeviceId;
use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_core::version;
use fleetward_events::Severity;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::events::EventFilter;

/// The SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[default]
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A device row with its tags folded in as a JSON array of `[key, value]`
    /// pairs (as text): one statement per lookup or page, not one plus one
    /// for the tags.
    pub(crate) const fn device_columns(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "d.seq, d.id, d.hardware, d.version, d.status, d.created_at, \
                 d.first_seen, d.last_seen, \
                 (SELECT json_group_array(json_array(t.key, t.value)) FROM device_tags t \
                  WHERE t.device_seq = d.seq) AS tags"
            }
            // json_agg over no rows is NULL, where SQLite's aggregate is `[]`.
            Dialect::Postgres => {
                "d.seq, d.id, d.hardware, d.version, d.status, d.created_at, \
                 d.first_seen, d.last_seen, \
                 (SELECT COALESCE(json_agg(json_build_array(t.key, t.value)), '[]'::json)::text \
                  FROM device_tags t WHERE t.device_seq = d.seq) AS tags"
            }
        }
    }
}

/// The columns of a security-event entry, in both dialects.
pub(crate) const ENTRY_COLUMNS: &str = "seq, kind, severity, device, source, server_time, \
     device_time, message, detail, prev_hash, hash";

/// Positions in [`Dialect::device_columns`] (the same in both dialects):
/// a device is read on every check-in, and a look-up by name walks the
/// columns' names each time.
pub(crate) mod device_col {
    pub const ID: usize = 1;
    pub const HARDWARE: usize = 2;
    pub const VERSION: usize = 3;
    pub const STATUS: usize = 4;
    pub const CREATED_AT: usize = 5;
    pub const FIRST_SEEN: usize = 6;
    pub const LAST_SEEN: usize = 7;
    pub const TAGS: usize = 8;
}

/// Positions in [`ENTRY_COLUMNS`]: the event log is read in bulk (`verify`
/// reads every row), where a look-up by name costs more than the hashing.
pub(crate) mod entry_col {
    pub const SEQ: usize = 0;
    pub const KIND: usize = 1;
    pub const SEVERITY: usize = 2;
    pub const DEVICE: usize = 3;
    pub const SOURCE: usize = 4;
    pub const SERVER_TIME: usize = 5;
    pub const DEVICE_TIME: usize = 6;
    pub const MESSAGE: usize = 7;
    pub const DETAIL: usize = 8;
    pub const PREV_HASH: usize = 9;
    pub const HASH: usize = 10;
}

/// A page of devices matching `query`, after `after`, in id order.
pub(crate) fn device_page_sql(
    sink: &mut impl SqlSink,
    dialect: Dialect,
    query: Option<&Expr>,
    after: Option<&DeviceId>,
    limit: u32,
) {
    sink.push(&format!(
        "SELECT {} FROM devices d WHERE 1 = 1",
        dialect.device_columns()
    ));
    if let Some(expr) = query {
        sink.push(" AND ");
        push_predicate(sink, expr, TagForm::for_query(expr));
    }
    if let Some(after) = after {
        sink.push(" AND d.id > ");
        sink.push_bind(after.as_str().to_owned());
    }
    // A number we format ourselves: nothing to inject.
    sink.push(&format!(
        " ORDER BY d.id LIMIT {}",
        limit.min(crate::MAX_PAGE)
    ));
}

/// How many devices match `query`, as column `n`.
pub(crate) fn device_count_sql(sink: &mut impl SqlSink, query: Option<&Expr>) {
    sink.push("SELECT count(*) AS n FROM devices d");
    if let Some(expr) = query {
        sink.push(" WHERE ");
        push_predicate(sink, expr, TagForm::for_query(expr));
    }
}

/// A page of security events matching `filter` with `seq > after`.
pub(crate) fn events_page_sql(
    sql: &mut impl SqlSink,
    filter: &EventFilter,
    after: Option<u64>,
    limit: u32,
) {
    sql.push(&format!(
        "SELECT {ENTRY_COLUMNS} FROM security_events WHERE seq > "
    ));
    sql.push(&after.unwrap_or(0).to_string());
    if !filter.kinds.is_empty() {
        sql.push(" AND kind IN (");
        for (n, kind) in filter.kinds.iter().enumerate() {
            if n > 0 {
                sql.push(", ");
            }
            sql.push_bind(kind.as_str().to_owned());
        }
        sql.push(")");
    }
    if let Some(min) = filter.min_severity {
        let allowed: Vec<&str> = Severity::ALL
            .iter()
            .filter(|s| **s >= min)
            .map(|s| s.as_str())
            .collect();
        sql.push(" AND severity IN (");
        for (n, severity) in allowed.iter().enumerate() {
            if n > 0 {
                sql.push(", ");
            }
            sql.push_bind((*severity).to_owned());
        }
        sql.push(")");
    }
    if let Some(device) = &filter.device {
        sql.push(" AND device = ");
        sql.push_bind(device.as_str().to_owned());
    }
    if let Some(since) = filter.since_ms {
        sql.push(&format!(" AND server_time >= {since}"));
    }
    if let Some(until) = filter.until_ms {
        sql.push(&format!(" AND server_time < {until}"));
    }
    sql.push(&format!(
        " ORDER BY seq LIMIT {}",
        limit.min(crate::MAX_PAGE)
    ));
}

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

/// SQL text with the dialect's placeholders (`?`, or `$1`, `$2`, … for
/// PostgreSQL) and the values to bind, in order.
#[derive(Debug, Default)]
pub(crate) struct PlainSql {
    pub dialect: Dialect,
    pub sql: String,
    pub params: Vec<String>,
}

impl PlainSql {
    pub(crate) fn new(dialect: Dialect) -> PlainSql {
        PlainSql {
            dialect,
            ..PlainSql::default()
        }
    }
}

impl SqlSink for PlainSql {
    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }
    fn push_bind(&mut self, value: String) {
        self.params.push(value);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.params.len().to_string());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The name of each column of a `SELECT` list, by position (the name
    /// after `AS`, else the column without its table).
    fn names(list: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut current = String::new();
        for c in list.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        names.push(current);
        names
            .iter()
            .map(|column| {
                let column = column.trim();
                let column = column.rsplit(" AS ").next().unwrap_or(column);
                column.rsplit('.').next().unwrap_or(column).to_owned()
            })
            .collect()
    }

    fn check(list: &str, positions: &[(&str, usize)]) {
        let names = names(list);
        for (name, position) in positions {
            assert_eq!(
                names.get(*position).map(String::as_str),
                Some(*name),
                "{names:?}"
            );
        }
    }

    #[test]
    fn decoders_read_the_columns_they_name() {
        check(
            ENTRY_COLUMNS,
            &[
                ("seq", entry_col::SEQ),
                ("kind", entry_col::KIND),
                ("severity", entry_col::SEVERITY),
                ("device", entry_col::DEVICE),
                ("source", entry_col::SOURCE),
                ("server_time", entry_col::SERVER_TIME),
                ("device_time", entry_col::DEVICE_TIME),
                ("message", entry_col::MESSAGE),
                ("detail", entry_col::DETAIL),
                ("prev_hash", entry_col::PREV_HASH),
                ("hash", entry_col::HASH),
            ],
        );
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            check(
                dialect.device_columns(),
                &[
                    ("id", device_col::ID),
                    ("hardware", device_col::HARDWARE),
                    ("version", device_col::VERSION),
                    ("status", device_col::STATUS),
                    ("created_at", device_col::CREATED_AT),
                    ("first_seen", device_col::FIRST_SEEN),
                    ("last_seen", device_col::LAST_SEEN),
                    ("tags", device_col::TAGS),
                ],
            );
        }
    }
}
