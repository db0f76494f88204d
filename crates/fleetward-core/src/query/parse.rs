//! Lexer and recursive-descent parser for the target query language.
//!
//! ```text
//! query      = or
//! or         = and { "or" and }
//! and        = unary { "and" unary }
//! unary      = "not" unary | primary
//! primary    = "(" or ")" | field [ op value | "in" "(" value { "," value } [ "," ] ")" ]
//! field      = "id" | "hw" | "hardware" | "version" | "status" | "tag." KEY | KEY
//! op         = "=" | "!=" | "<" | "<=" | ">" | ">="
//! value      = '"' { char | '\"' | '\\' } '"' | WORD
//! ```
//!
//! Keywords are case-insensitive; field names and tag keys are lower-case, as
//! tag keys always are. A field on its own is a tag test (`beta`: the device
//! carries the tag `beta`). Every error carries the byte offset where it went
//! wrong, so the CLI and the console can point at it. Input comes from the
//! network, so its length and nesting are bounded.

use super::{CompareOp, Expr, Field, QueryError, Value};
use crate::{DeviceStatus, TagKey, TagValue};

/// The longest query accepted; queries come from the network.
pub const MAX_QUERY_LEN: usize = 4096;

/// The deepest nesting of parentheses and `not` accepted, so that a hostile
/// query cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// The longest `in (…)` list accepted.
pub const MAX_IN_VALUES: usize = 1000;

pub fn parse(text: &str) -> Result<Expr, QueryError> {
    if text.len() > MAX_QUERY_LEN {
        return Err(error(
            MAX_QUERY_LEN,
            format!("query is longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: text.len(),
        depth: 0,
    };
    if parser.peek().is_none() {
        return Err(error(0, "query is empty".into()));
    }
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) if token.kind == Kind::RParen => Err(error(token.at, "unmatched ')'".into())),
        Some(token) => Err(error(
            token.at,
            format!(
                "expected 'and', 'or' or the end of the query, found {}",
                token.kind.describe()
            ),
        )),
    }
}

fn error(position: usize, message: String) -> QueryError {
    QueryError { position, message }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Comma,
    Op(CompareOp),
    /// A quoted string, unescaped.
    Text(String),
    /// An unquoted word: a keyword, a field, or a bare value.
    Word(String),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::LParen => "'('".into(),
            Kind::RParen => "')'".into(),
            Kind::Comma => "','".into(),
            Kind::Op(op) => format!("'{}'", op_text(*op)),
            Kind::Text(text) => format!("the string {text:?}"),
            Kind::Word(word) => format!("'{word}'"),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Kind::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Byte offset of the token's first character.
    at: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '+' | '@' | '-')
}

fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let kind = match c {
            c if c.is_whitespace() => continue,
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            ',' => Kind::Comma,
            '=' => {
                if chars.next_if(|&(_, c)| c == '=').is_some() {
                    return Err(error(at, "'==' is not an operator; use '='".into()));
                }
                Kind::Op(CompareOp::Eq)
            }
            '!' => match chars.next_if(|&(_, c)| c == '=') {
                Some(_) => Kind::Op(CompareOp::Ne),
                None => {
                    return Err(error(
                        at,
                        "'!' must be followed by '='; use 'not' to negate".into(),
                    ));
                }
            },
            '<' => match chars.next_if(|&(_, c)| c == '=') {
                Some(_) => Kind::Op(CompareOp::Le),
                None if chars.next_if(|&(_, c)| c == '>').is_some() => {
                    return Err(error(at, "'<>' is not an operator; use '!='".into()));
                }
                None => Kind::Op(CompareOp::Lt),
            },
            '>' => match chars.next_if(|&(_, c)| c == '=') {
                Some(_) => Kind::Op(CompareOp::Ge),
                None => Kind::Op(CompareOp::Gt),
            },
            '"' => Kind::Text(lex_string(at, &mut chars)?),
            '\'' => {
                return Err(error(at, "strings are written in double quotes".into()));
            }
            c if is_word_char(c) => {
                let mut end = at + c.len_utf8();
                while let Some((next_at, next)) = chars.next_if(|&(_, c)| is_word_char(c)) {
                    end = next_at + next.len_utf8();
                }
                Kind::Word(text[at..end].to_owned())
            }
            other => {
                return Err(error(at, format!("unexpected character {other:?}")));
            }
        };
        tokens.push(Token { kind, at });
    }
    Ok(tokens)
}

fn lex_string(
    open: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, QueryError> {
    let mut value = String::new();
    loop {
        match chars.next() {
            None => return Err(error(open, "unterminated string".into())),
            Some((_, '"')) => return Ok(value),
            Some((at, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\\'))) => value.push(c),
                Some((_, other)) => {
                    return Err(error(
                        at,
                        format!("unknown escape '\\{other}'; only \\\" and \\\\ are allowed"),
                    ));
                }
                None => return Err(error(open, "unterminated string".into())),
            },
            Some((at, c)) if c.is_control() => {
                return Err(error(at, "control character in string".into()));
            }
            Some((_, c)) => value.push(c),
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Byte length of the query, the position of "end of query" errors.
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|t| t.kind.is_keyword(keyword)) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: Kind, what: &str) -> Result<Token, QueryError> {
        match self.bump() {
            Some(token) if token.kind == kind => Ok(token),
            Some(token) => Err(error(
                token.at,
                format!("expected {what}, found {}", token.kind.describe()),
            )),
            None => Err(error(
                self.end,
                format!("expected {what}, found the end of the query"),
            )),
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                at,
                format!("query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        while self.eat_keyword("and") {
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        let at = self.peek().map_or(self.end, |t| t.at);
        if self.eat_keyword("not") {
            self.enter(at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let Some(token) = self.bump() else {
            return Err(error(
                self.end,
                "expected a condition, found the end of the query".into(),
            ));
        };
        match token.kind {
            Kind::LParen => {
                self.enter(token.at)?;
                let inner = self.or()?;
                self.expect(Kind::RParen, "')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            Kind::Word(ref word) if is_keyword(word) => Err(error(
                token.at,
                format!(
                    "expected a condition, found the keyword '{}'",
                    word.to_ascii_lowercase()
                ),
            )),
            Kind::Word(word) => {
                let field = field(&word, token.at)?;
                self.condition(field, token.at)
            }
            other => Err(error(
                token.at,
                format!("expected a condition, found {}", other.describe()),
            )),
        }
    }

    /// What follows a field: a comparison, `in (…)`, or nothing (a tag test).
    fn condition(&mut self, field: Field, field_at: usize) -> Result<Expr, QueryError> {
        if self.eat_keyword("in") {
            return self.in_list(field);
        }
        let op = match self.peek() {
            Some(Token {
                kind: Kind::Op(op), ..
            }) => *op,
            _ => {
                return match field {
                    Field::Tag(key) => Ok(Expr::Has(key)),
                    other => Err(error(
                        field_at,
                        format!(
                            "'{}' needs a comparison, e.g. {} = \"…\"",
                            field_name(&other),
                            field_name(&other)
                        ),
                    )),
                };
            }
        };
        self.next += 1;
        if matches!(field, Field::Status) && op != CompareOp::Eq && op != CompareOp::Ne {
            return Err(error(
                field_at,
                "status has no order; use = or != or in (…)".into(),
            ));
        }
        let value = self.value(&field)?;
        Ok(Expr::Compare { field, op, value })
    }

    fn in_list(&mut self, field: Field) -> Result<Expr, QueryError> {
        self.expect(Kind::LParen, "'(' after 'in'")?;
        let mut values = Vec::new();
        loop {
            if let Some(Token {
                kind: Kind::RParen,
                at,
            }) = self.peek()
            {
                if values.is_empty() {
                    return Err(error(*at, "'in' needs at least one value".into()));
                }
                self.next += 1;
                break;
            }
            if values.len() == MAX_IN_VALUES {
                let at = self.peek().map_or(self.end, |t| t.at);
                return Err(error(
                    at,
                    format!("'in' takes at most {MAX_IN_VALUES} values"),
                ));
            }
            values.push(self.value(&field)?);
            match self.bump() {
                Some(Token {
                    kind: Kind::Comma, ..
                }) => {}
                Some(Token {
                    kind: Kind::RParen, ..
                }) => break,
                Some(token) => {
                    return Err(error(
                        token.at,
                        format!("expected ',' or ')', found {}", token.kind.describe()),
                    ));
                }
                None => {
                    return Err(error(
                        self.end,
                        "expected ')', found the end of the query".into(),
                    ));
                }
            }
        }
        Ok(Expr::In { field, values })
    }

    fn value(&mut self, field: &Field) -> Result<Value, QueryError> {
        let Some(token) = self.bump() else {
            return Err(error(
                self.end,
                "expected a value, found the end of the query".into(),
            ));
        };
        let text = match token.kind {
            Kind::Text(text) => text,
            Kind::Word(word) if !is_keyword(&word) => word,
            other => {
                return Err(error(
                    token.at,
                    format!("expected a value, found {}", other.describe()),
                ));
            }
        };
        check_value(field, text, token.at)
    }
}

fn is_keyword(word: &str) -> bool {
    ["and", "or", "not", "in"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

fn field(word: &str, at: usize) -> Result<Field, QueryError> {
    let tag = |key: &str, key_at: usize| {
        TagKey::parse(key)
            .map(Field::Tag)
            .map_err(|e| error(key_at, e.to_string()))
    };
    match word {
        "id" => Ok(Field::Id),
        "hw" | "hardware" => Ok(Field::Hardware),
        "version" => Ok(Field::Version),
        "status" => Ok(Field::Status),
        _ => match word.strip_prefix("tag.") {
            Some(key) => tag(key, at + "tag.".len()),
            None => tag(word, at),
        },
    }
}

/// Checks a literal against its field, so that a query that can never match
/// because of a typo is an error rather than an empty answer.
fn check_value(field: &Field, text: String, at: usize) -> Result<Value, QueryError> {
    match field {
        Field::Status => DeviceStatus::parse(&text)
            .map(Value::Status)
            .ok_or_else(|| {
                let names: Vec<&str> = DeviceStatus::ALL.iter().map(|s| s.as_str()).collect();
                error(
                    at,
                    format!("unknown status {text:?}; one of {}", names.join(", ")),
                )
            }),
        Field::Tag(key) => TagValue::parse_for(key, &text)
            .map(|_| Value::Text(text))
            .map_err(|e| error(at, e.to_string())),
        Field::Id | Field::Hardware | Field::Version => {
            if text.len() > 256 {
                return Err(error(at, "value is longer than 256 bytes".into()));
            }
            Ok(Value::Text(text))
        }
    }
}

pub(super) fn op_text(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "!=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    }
}

pub(super) fn field_name(field: &Field) -> String {
    match field {
        Field::Id => "id".into(),
        Field::Hardware => "hw".into(),
        Field::Version => "version".into(),
        Field::Status => "status".into(),
        Field::Tag(key) => match key.as_str() {
            "id" | "hw" | "hardware" | "version" | "status" => format!("tag.{key}"),
            _ if key.as_str().starts_with("tag.") => format!("tag.{key}"),
            other => other.to_owned(),
        },
    }
}
