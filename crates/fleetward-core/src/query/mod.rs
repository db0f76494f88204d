//! The target query language: which devices a rollout, a listing or a
//! report is about.
//!
//! ```text
//! hw = "rev2" and region in ("eu", "us") and not beta and version < "2.0.0"
//! ```
//!
//! This module only parses and checks; it never evaluates against a fleet.
//! Stores translate the [`Expr`] tree into their own SQL with bound
//! parameters, so a query runs in the database and never loads the fleet into
//! memory.

mod parse;

pub use parse::parse;

use std::fmt;

use crate::{DeviceStatus, TagKey};

/// A parsed, checked query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `field op "value"`.
    Compare {
        field: Field,
        op: CompareOp,
        value: Value,
    },
    /// `field in ("a", "b")`; the list is never empty.
    In {
        field: Field,
        values: Vec<Value>,
    },
    /// A bare tag key: the device carries that tag, whatever its value.
    Has(TagKey),
}

/// What a comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `id`: the device id.
    Id,
    /// `hw` or `hardware`: the hardware type.
    Hardware,
    /// `version`: the running software version, ordered as versions are (see [`crate::version`]).
    Version,
    /// `status`: one of the [`DeviceStatus`] names.
    Status,
    /// Any other name, or `tag.NAME` for a tag whose key is also a field name.
    Tag(TagKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal, already checked against its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Status(DeviceStatus),
}

impl Value {
    pub fn as_str(&self) -> &str {
        match self {
            Value::Text(text) => text,
            Value::Status(status) => status.as_str(),
        }
    }
}

/// A query that does not parse, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct QueryError {
    /// Byte offset into the query text (0-based).
    pub position: usize,
    pub message: String,
}

/// Prints the query in the syntax [`parse`] reads, with only the parentheses
/// precedence needs, so that `parse(&expr.to_string()) == Ok(expr)`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(left, right) => {
                write!(f, "{left} or ")?;
                write_grouped(f, right, |e| matches!(e, Expr::Or(..)))
            }
            Expr::And(left, right) => {
                write_grouped(f, left, |e| matches!(e, Expr::Or(..)))?;
                f.write_str(" and ")?;
                write_grouped(f, right, |e| matches!(e, Expr::Or(..) | Expr::And(..)))
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_grouped(f, inner, |e| matches!(e, Expr::Or(..) | Expr::And(..)))
            }
            Expr::Compare { field, op, value } => write!(
                f,
                "{} {} {}",
                parse::field_name(field),
                parse::op_text(*op),
                Quoted(value.as_str())
            ),
            Expr::In { field, values } => {
                write!(f, "{} in (", parse::field_name(field))?;
                for (n, value) in values.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Quoted(value.as_str()))?;
                }
                f.write_str(")")
            }
            Expr::Has(key) => f.write_str(&parse::field_name(&Field::Tag(key.clone()))),
        }
    }
}

fn write_grouped(
    f: &mut fmt::Formatter<'_>,
    expr: &Expr,
    needs_parens: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    if needs_parens(expr) {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

/// A value as a query string literal.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}
