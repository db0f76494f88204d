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
