//! Canonical JSON (the OLPC dialect TUF signs over): sorted keys, no
//! insignificant whitespace, integers only. Signatures are made and checked
//! over these bytes, never over whatever bytes travelled.

use serde::Serialize;

use crate::{Result, TufError};

/// The canonical JSON bytes of `value`.
pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut bytes, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut serializer)
        .map_err(|e| TufError::Canonical(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sorted_and_space_is_gone() {
        let value = serde_json::json!({"b": 1, "a": {"d": [1, 2], "c": "x\"y"}});
        assert_eq!(
            String::from_utf8(super::canonical(&value).unwrap()).unwrap(),
            r#"{"a":{"c":"x\"y","d":[1,2]},"b":1}"#
        );
    }

    #[test]
    fn floats_are_refused() {
        assert!(super::canonical(&serde_json::json!({"a": 1.5})).is_err());
    }
}
