//! Deserialisers and text checks shared by the wire types.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Refuses text holding a NUL character (U+0000): JSON carries it, but no text of a
/// person's means it, and PostgreSQL (the shared backend's record) cannot store it.
pub fn check_text(field: &'static str, text: &str) -> crate::Result<()> {
    match text.find('\0') {
        None => Ok(()),
        Some(at) => Err(crate::Error::invalid(
            field,
            format!("holds a NUL character (U+0000) at byte {at}, which text may not"),
        )),
    }
}

/// Reads an unsigned integer written as `5` or as `5.0`. JSON does not tell the two
/// apart, JSON Schema's `integer` takes both, and many JSON writers (Python's floats,
/// JavaScript's numbers past some arithmetic) write the second; a fraction, a negative
/// number or one past `T`'s range is refused.
pub fn integral<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    d.deserialize_any(IntegralVisitor(PhantomData))
}

/// Reads an optional field that may be left out but not written `null` (give the field
/// `#[serde(default)]`): the schema's optional property has a type, and `null` is not
/// of it.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// [`integral`] for an optional field (`null` or absent is `None`; give the field
/// `#[serde(default)]`).
pub fn integral_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Integral<T>(T);
    impl<'de, T: TryFrom<u64>> serde::Deserialize<'de> for Integral<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            integral(d).map(Integral)
        }
    }
    Ok(<Option<Integral<T>> as serde::Deserialize>::deserialize(d)?.map(|i| i.0))
}

struct IntegralVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> IntegralVisitor<T> {
    fn fit<E: de::Error>(&self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), self))
    }
}

impl<T: TryFrom<u64>> Visitor<'_> for IntegralVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = (u64::MAX..=u64::MAX)
            .chain((0..64).map(|b| (1u64 << (63 - b)) - 1))
            .find(|&m| T::try_from(m).is_ok())
            .unwrap_or(0);
        write!(f, "an integer from 0 to {max}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.fit(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.fit(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // 2^64 is the first f64 past u64's range.
        if v.is_finite() && v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            self.fit(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_with_a_nul_is_refused_naming_where_and_other_controls_pass() {
        assert!(check_text("caption", "").is_ok());
        assert!(check_text("caption", "tabs\tand\nnew lines, é, 🐱").is_ok());
        let err = check_text("caption", "ab\0c").unwrap_err();
        assert_eq!(err.field(), Some("caption"));
        assert!(err.to_string().contains("byte 2"), "{err}");
        assert!(check_text("text", "\0").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "integral")]
        n: u32,
        #[serde(default, deserialize_with = "integral_opt")]
        m: Option<u64>,
    }

    fn n(json: &str) -> Result<(u32, Option<u64>), String> {
        serde_json::from_str::<Body>(json)
            .map(|b| (b.n, b.m))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_read_whether_written_with_a_point_or_not() {
        assert_eq!(n(r#"{"n": 82}"#), Ok((82, None)));
        assert_eq!(n(r#"{"n": 82.0, "m": 5.0}"#), Ok((82, Some(5))));
        assert_eq!(n(r#"{"n": 8.2e1, "m": null}"#), Ok((82, None)));
        assert_eq!(n(r#"{"n": -0.0}"#), Ok((0, None)));
        for bad in [
            r#"{"n": 82.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 4294967296.0}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "82"}"#,
            r#"{"n": 1, "m": 18446744073709551616.0}"#,
        ] {
            let e = n(bad).unwrap_err();
            assert!(e.contains("integer from 0 to"), "{bad}: {e}");
        }
        assert!(n(r#"{"n": 1}"#).is_ok());
    }
}
