//! Headers-exchange matching as RabbitMQ does it: `x-match` is `all` (the default), `any`,
//! `all-with-x` or `any-with-x`; the plain forms ignore binding arguments whose names start
//! with "x-"; a void binding value only asks for the header to be present; numbers compare by
//! value across integer and float types (Erlang's `==`).

use warren_amqp::AmqpError;
use warren_amqp::{FieldTable, FieldValue, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XMatch {
    All,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeadersBinding {
    kind: XMatch,
    /// The arguments that take part in matching, x-match itself excluded.
    args: Vec<(ShortStr, FieldValue)>,
}

impl HeadersBinding {
    /// Reads a binding's arguments, refusing an x-match that RabbitMQ would refuse.
    pub fn parse(args: &FieldTable) -> Result<HeadersBinding, AmqpError> {
        let (kind, with_x) = match args.get("x-match") {
            None => (XMatch::All, false),
            Some(FieldValue::LongStr(s)) => match s.as_ref() {
                b"all" => (XMatch::All, false),
                b"any" => (XMatch::Any, false),
                b"all-with-x" => (XMatch::All, true),
                b"any-with-x" => (XMatch::Any, true),
                other => {
                    return Err(AmqpError::precondition_failed(format!(
                        "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
                        String::from_utf8_lossy(other)
                    )));
                }
            },
            Some(other) => {
                return Err(AmqpError::precondition_failed(format!(
                    "Invalid x-match field type {} (value {}); expected longstr",
                    other.type_name(),
                    erlang_term(other)
                )));
            }
        };
        let args = args
            .iter()
            .filter(|(k, _)| k.as_bytes() != b"x-match")
            .filter(|(k, _)| with_x || !k.starts_with(b"x-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(HeadersBinding { kind, args })
    }

    pub fn matches(&self, headers: Option<&FieldTable>) -> bool {
        let present = |k: &ShortStr| headers.and_then(|h| h.get_bytes(k.as_bytes()));
        let one = |(k, want): &(ShortStr, FieldValue)| match present(k) {
            None => false,
            Some(_) if *want == FieldValue::Void => true,
            Some(have) => values_equal(want, have),
        };
        match self.kind {
            XMatch::All => self.args.iter().all(one),
            XMatch::Any => self.args.iter().any(one),
        }
    }
}

trait GetBytes {
    fn get_bytes(&self, key: &[u8]) -> Option<&FieldValue>;
}

impl GetBytes for FieldTable {
    fn get_bytes(&self, key: &[u8]) -> Option<&FieldValue> {
        self.iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v)
    }
}

fn number(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::F32(f) => Some(*f as f64),
        FieldValue::F64(f) => Some(*f),
        FieldValue::Timestamp(t) => Some(*t as f64),
        other => other.as_i64().map(|i| i as f64),
    }
}

fn values_equal(a: &FieldValue, b: &FieldValue) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x == y;
    }
    match (a.as_bytes(), b.as_bytes()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A value written roughly as Erlang would print it, for error texts.
fn erlang_term(v: &FieldValue) -> String {
    match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            format!("<<\"{}\">>", String::from_utf8_lossy(b))
        }
        other => match number(other) {
            Some(n) if other.as_i64().is_some() => (n as i64).to_string(),
            Some(n) => n.to_string(),
            None => format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(pairs: &[(&str, FieldValue)]) -> HeadersBinding {
        let t = FieldTable(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        );
        HeadersBinding::parse(&t).unwrap()
    }

    fn headers(pairs: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn all_and_any() {
        let all = binding(&[("a", "1".into()), ("b", FieldValue::I32(2))]);
        assert!(all.matches(Some(&headers(&[
            ("a", "1".into()),
            ("b", FieldValue::I64(2))
        ]))));
        assert!(!all.matches(Some(&headers(&[("a", "1".into())]))));
        assert!(!all.matches(None));
        let any = binding(&[
            ("x-match", "any".into()),
            ("a", "1".into()),
            ("b", "2".into()),
        ]);
        assert!(any.matches(Some(&headers(&[("b", "2".into())]))));
        assert!(!any.matches(Some(&headers(&[("b", "3".into())]))));
        assert!(!any.matches(None));
    }

    #[test]
    fn empty_all_matches_everything_and_empty_any_nothing() {
        assert!(binding(&[]).matches(None));
        assert!(!binding(&[("x-match", "any".into())]).matches(None));
    }

    #[test]
    fn x_arguments_count_only_with_x() {
        let plain = binding(&[("x-match", "all".into()), ("x-k", "v".into())]);
        assert!(plain.matches(None));
        let with_x = binding(&[("x-match", "all-with-x".into()), ("x-k", "v".into())]);
        assert!(!with_x.matches(None));
        assert!(with_x.matches(Some(&headers(&[("x-k", "v".into())]))));
        let any_x = binding(&[("x-match", "any-with-x".into()), ("x-k", "v".into())]);
        assert!(any_x.matches(Some(&headers(&[("x-k", "v".into())]))));
    }

    #[test]
    fn void_means_present() {
        let b = binding(&[("k", FieldValue::Void)]);
        assert!(b.matches(Some(&headers(&[("k", FieldValue::I8(0))]))));
        assert!(!b.matches(Some(&headers(&[("j", FieldValue::I8(0))]))));
    }

    #[test]
    fn numbers_compare_by_value_strings_by_bytes() {
        let b = binding(&[("n", FieldValue::I32(1))]);
        assert!(b.matches(Some(&headers(&[("n", FieldValue::F64(1.0))]))));
        assert!(!b.matches(Some(&headers(&[("n", "1".into())]))));
    }

    #[test]
    fn bad_x_match_is_refused() {
        let t = FieldTable::new().with("x-match", "some");
        let e = HeadersBinding::parse(&t).unwrap_err();
        assert_eq!(e.code, 406);
    }
}
