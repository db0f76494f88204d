//! The target query language, as operators write it.
//!
//! `check` pins what a query means by printing the parsed tree back in full
//! parentheses; `check_error` pins the message and the byte position an
//! operator is pointed at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleetward_core::query::{CompareOp, Expr, Field, Value, parse};
use fleetward_core::{DeviceStatus, TagKey};
use proptest::prelude::*;

/// Prints a tree with every compound node in parentheses, so precedence is
/// visible in the expected strings.
fn explicit(expr: &Expr) -> String {
    match expr {
        Expr::And(l, r) => format!("({} AND {})", explicit(l), explicit(r)),
        Expr::Or(l, r) => format!("({} OR {})", explicit(l), explicit(r)),
        Expr::Not(inner) => format!("NOT {}", explicit(inner)),
        other => other.to_string(),
    }
}

fn check(query: &str, expected: &str) {
    match parse(query) {
        Ok(expr) => {
            assert_eq!(explicit(&expr), expected, "query: {query}");
            assert_eq!(
                parse(&expr.to_string()).as_ref(),
                Ok(&expr),
                "{query} prints as {expr}, which must parse back"
            );
        }
        Err(e) => panic!("{query:?} should parse, got: {e}"),
    }
}

fn check_error(query: &str, position: usize, message_part: &str) {
    match parse(query) {
        Ok(expr) => panic!("{query:?} should fail, parsed as {}", explicit(&expr)),
        Err(e) => {
            assert!(
                e.message.contains(message_part),
                "{query:?}: message {:?} should contain {message_part:?}",
                e.message
            );
            assert_eq!(e.position, position, "{query:?}: {}", e.message);
        }
    }
}

#[test]
fn the_example_from_the_issue() {
    check(
        r#"hw = "rev2" and region in ("eu", "us") and not beta and version < "2.0.0""#,
        r#"(((hw = "rev2" AND region in ("eu", "us")) AND NOT beta) AND version < "2.0.0")"#,
    );
}

#[test]
fn fields_operators_and_values() {
    check(r#"id = "dev-1""#, r#"id = "dev-1""#);
    check(r#"hardware != "rev1""#, r#"hw != "rev1""#);
    check(r#"version >= "1.2.0-rc.1""#, r#"version >= "1.2.0-rc.1""#);
    check(r#"version<="2""#, r#"version <= "2""#);
    check(r#"version > 1.0.0"#, r#"version > "1.0.0""#);
    check("region = eu", r#"region = "eu""#);
    check("status = active", r#"status = "active""#);
    check(
        r#"status in (pending, "quarantined")"#,
        r#"status in ("pending", "quarantined")"#,
    );
    check(r#"tag.version = "x""#, r#"tag.version = "x""#);
    check(r#"tag.region = "eu""#, r#"region = "eu""#);
    check("beta", "beta");
    check("tag.status", "tag.status");
    check(r#"flag = """#, r#"flag = """#);
    check(r#"site in ("a", "b",)"#, r#"site in ("a", "b")"#);
    check(
        r#"hw = "a \"quoted\" \\ name""#,
        r#"hw = "a \"quoted\" \\ name""#,
    );
}

#[test]
fn precedence_is_not_then_and_then_or() {
    check("a or b and c", "(a OR (b AND c))");
    check("a and b or c", "((a AND b) OR c)");
    check("not a and b", "(NOT a AND b)");
    check("not (a and b)", "NOT (a AND b)");
    check("not not a", "NOT NOT a");
    check("(a or b) and c", "((a OR b) AND c)");
    check("a or (b or c)", "(a OR (b OR c))");
    check("a and (b and c)", "(a AND (b AND c))");
    check("((a))", "a");
}

#[test]
fn keywords_are_case_insensitive() {
    check("a AND b Or NOT c", "((a AND b) OR NOT c)");
    check(r#"region IN ("eu")"#, r#"region in ("eu")"#);
}

#[test]
fn errors_point_at_the_problem() {
    check_error("", 0, "empty");
    check_error("   ", 0, "empty");
    check_error(r#"hw == "x""#, 3, "'=='");
    check_error(r#"hw <> "x""#, 3, "'!='");
    check_error(r#"hw = "x"#, 5, "unterminated string");
    check_error(r#"hw = 'x'"#, 5, "double quotes");
    check_error(r#"hw = "a\nb""#, 7, "unknown escape");
    check_error("hw =", 4, "expected a value, found the end");
    check_error("hw = and", 5, "expected a value, found 'and'");
    check_error("hw", 0, "'hw' needs a comparison");
    check_error("a and", 5, "expected a condition, found the end");
    check_error("and a", 0, "found the keyword 'and'");
    check_error("a b", 2, "expected 'and', 'or' or the end");
    check_error("(a", 2, "expected ')'");
    check_error("a)", 1, "unmatched ')'");
    check_error("a in ()", 6, "at least one value");
    check_error("a in (\"x\" \"y\")", 10, "expected ',' or ')'");
    check_error("a in x", 5, "'(' after 'in'");
    check_error("Region = \"eu\"", 0, "tag key \"Region\"");
    check_error("tag.Bad = x", 4, "tag key \"Bad\"");
    check_error("true", 0, "word of the query language");
    check_error("region = \"e u\"", 9, "tag value");
    check_error("status = online", 9, "unknown status \"online\"");
    check_error("status < active", 0, "status has no order");
    check_error("hw = x & y", 7, "unexpected character '&'");
    check_error("hw ! x", 3, "use 'not'");
    check_error("hw = \"\u{7}\"", 6, "control character");
}

#[test]
fn hostile_input_is_bounded() {
    let deep = format!("{}a{}", "(".repeat(65), ")".repeat(65));
    check_error(&deep, 64, "deeper than 64");
    let nots = format!("{}a", "not ".repeat(65));
    check_error(&nots, 256, "deeper than 64");
    check(&format!("{}a{}", "(".repeat(64), ")".repeat(64)), "a");

    let long = format!("hw = \"{}\"", "x".repeat(5000));
    check_error(&long, 4096, "longer than 4096");

    let many = format!("a in ({})", vec!["x"; 1001].join(","));
    check_error(&many, 6 + 2 * 1000, "at most 1000");
}

#[test]
fn parsed_values_are_typed() {
    assert_eq!(
        parse("status != decommissioned"),
        Ok(Expr::Compare {
            field: Field::Status,
            op: CompareOp::Ne,
            value: Value::Status(DeviceStatus::Decommissioned),
        })
    );
    assert_eq!(parse("tag.hw"), Ok(Expr::Has(TagKey::parse("hw").unwrap())));
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let key = prop::sample::select(vec![
        "region", "beta", "hw", "id", "a.b", "tag.x", "version",
    ])
    .prop_map(|k| TagKey::parse(k).unwrap());
    let text = "[a-z0-9\\\\\" .-]{0,8}";
    let tag_value = "[a-z0-9.:-]{0,8}";
    let op = prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ]);
    let leaf = prop_oneof![
        key.clone().prop_map(Expr::Has),
        (key.clone(), op.clone(), tag_value).prop_map(|(k, op, v)| Expr::Compare {
            field: Field::Tag(k),
            op,
            value: Value::Text(v),
        }),
        (
            prop::sample::select(vec![Field::Id, Field::Hardware, Field::Version]),
            op,
            text
        )
            .prop_map(|(field, op, v)| Expr::Compare {
                field,
                op,
                value: Value::Text(v),
            }),
        prop::collection::vec(prop::sample::select(DeviceStatus::ALL.to_vec()), 1..3).prop_map(
            |statuses| Expr::In {
                field: Field::Status,
                values: statuses.into_iter().map(Value::Status).collect(),
            }
        ),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_tree(expr in arb_expr()) {
        let printed = expr.to_string();
        prop_assert_eq!(parse(&printed), Ok(expr), "printed: {}", printed);
    }

    #[test]
    fn any_text_parses_or_fails_cleanly(text in "\\PC{0,64}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.position <= text.len());
        }
    }
}
