//! How a runner call's arguments and results cross the process hop.
//!
//! Values travel as JSON, except a value that serializes as one bare string
//! (a `String`, a `&str`, a newtype around one, anything whose `Serialize`
//! is `serialize_str`): that travels as the string's UTF-8 bytes followed
//! by a zero byte. JSON never ends with a zero byte, so the last byte tells
//! the two apart; at the end rather than the front, the marker lets a
//! payload that is owned ([`decode_owned`]) become its `String` in place,
//! with no copy of the text. The reason is cost: JSON escapes a string
//! byte by byte on the way out and scans it for escapes on the way in, so
//! `echo` of a 1 MB text spent about a third of its CPU time in
//! `serde_json`'s string escaping and unescaping (perf, README "Large
//! bodies"); raw, a string costs one copy and one UTF-8 check.
//!
//! Decoding a raw string hands it to the target type as a string
//! (`deserialize_any` → `visit_string`), which is what that type would
//! have read from a JSON string.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::de::value::{Error as ValueError, StringDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible};

/// The last byte of a raw string payload.
const RAW_STR: u8 = 0;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A JSON payload that does not parse as the target type.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A raw string that is not UTF-8, or not what the target type takes.
    #[error("{0}")]
    Raw(String),
}

/// Encodes `value` for the hop (see the module docs).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    if let Ok(raw) = value.serialize(RawStr) {
        return Ok(raw);
    }
    serde_json::to_vec(value)
}

/// Decodes a payload made by [`encode`] (or plain JSON).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_last() {
        Some((&RAW_STR, text)) => raw(text.to_vec()),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

/// [`decode`] of a payload the caller owns: a raw string becomes its
/// `String` in place (the marker popped, the bytes checked as UTF-8).
pub fn decode_owned<T: DeserializeOwned>(mut bytes: Vec<u8>) -> Result<T, DecodeError> {
    if bytes.last() == Some(&RAW_STR) {
        bytes.pop();
        return raw(bytes);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

fn raw<T: DeserializeOwned>(text: Vec<u8>) -> Result<T, DecodeError> {
    let text = String::from_utf8(text)
        .map_err(|e| DecodeError::Raw(format!("a raw string that is not UTF-8: {e}")))?;
    T::deserialize(RawString(text)).map_err(|e| DecodeError::Raw(e.to_string()))
}

/// A raw string as a deserializer: what `serde_json` does with a JSON
/// string, it does. Newtype structs and options take the string as their
/// inner value; everything else is serde's own string deserializer (which
/// also reads unit enum variants from a string).
struct RawString(String);

impl<'de> de::Deserializer<'de> for RawString {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        let de: StringDeserializer<ValueError> = self.0.into_deserializer();
        de::Deserializer::deserialize_enum(de, name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// A serializer that succeeds only for a bare string, writing its raw form.
struct RawStr;

/// "Not a bare string": the value goes as JSON instead.
#[derive(Debug)]
struct NotStr;

impl std::fmt::Display for NotStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a bare string")
    }
}

impl std::error::Error for NotStr {}

impl ser::Error for NotStr {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotStr
    }
}

/// Every `serialize_*` that is not a string refuses.
macro_rules! not_str {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Vec<u8>, NotStr> { Err(NotStr) })*
    };
}

impl ser::Serializer for RawStr {
    type Ok = Vec<u8>;
    type Error = NotStr;
    type SerializeSeq = Impossible<Vec<u8>, NotStr>;
    type SerializeTuple = Impossible<Vec<u8>, NotStr>;
    type SerializeTupleStruct = Impossible<Vec<u8>, NotStr>;
    type SerializeTupleVariant = Impossible<Vec<u8>, NotStr>;
    type SerializeMap = Impossible<Vec<u8>, NotStr>;
    type SerializeStruct = Impossible<Vec<u8>, NotStr>;
    type SerializeStructVariant = Impossible<Vec<u8>, NotStr>;

    fn serialize_str(self, v: &str) -> Result<Vec<u8>, NotStr> {
        let mut out = Vec::with_capacity(v.len() + 1);
        out.extend_from_slice(v.as_bytes());
        out.push(RAW_STR);
        Ok(out)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, NotStr> {
        value.serialize(self)
    }

    not_str! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, NotStr> {
        Err(NotStr)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, NotStr> {
        Err(NotStr)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotStr> {
        Err(NotStr)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotStr> {
        Err(NotStr)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotStr> {
        Err(NotStr)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotStr> {
        Err(NotStr)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotStr> {
        Err(NotStr)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotStr> {
        Err(NotStr)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotStr> {
        Err(NotStr)
    }

    fn is_human_readable(&self) -> bool {
        // The value would otherwise go as JSON, which is human-readable:
        // a type must pick the same form either way.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrapped(String);

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Row {
        text: String,
        n: u32,
    }

    #[test]
    fn a_bare_string_goes_raw_and_comes_back_unchanged() {
        let text = "quote \" backslash \\ newline \n nul \0 é 😀".to_string();
        let bytes = encode(&text).unwrap();
        assert_eq!(bytes.last(), Some(&RAW_STR));
        assert_eq!(&bytes[..bytes.len() - 1], text.as_bytes());
        assert_eq!(decode::<String>(&bytes).unwrap(), text);
        assert_eq!(decode_owned::<String>(bytes.clone()).unwrap(), text);
        // A text that itself ends in a zero byte keeps it.
        let nul = encode("ends in nul \0").unwrap();
        assert_eq!(decode_owned::<String>(nul).unwrap(), "ends in nul \0");
        // A newtype around a string, and a &str, go the same way.
        let w = encode(&Wrapped(text.clone())).unwrap();
        assert_eq!(w, bytes);
        assert_eq!(decode::<Wrapped>(&w).unwrap(), Wrapped(text.clone()));
        assert_eq!(encode(text.as_str()).unwrap(), bytes);
        // An option and a unit variant read it as a JSON string would be read.
        assert_eq!(
            decode::<Option<String>>(&bytes).unwrap(),
            Some(text.clone())
        );
        #[derive(Deserialize, Debug, PartialEq)]
        enum Mood {
            Happy,
        }
        assert_eq!(
            decode::<Mood>(&encode("Happy").unwrap()).unwrap(),
            Mood::Happy
        );
        // The empty string too.
        assert_eq!(decode::<String>(&encode("").unwrap()).unwrap(), "");
    }

    #[test]
    fn everything_else_goes_as_json() {
        let row = Row {
            text: "x".into(),
            n: 3,
        };
        let bytes = encode(&row).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&row).unwrap());
        assert_eq!(decode::<Row>(&bytes).unwrap(), row);
        for v in [
            encode(&7u64).unwrap(),
            encode(&vec!["a"]).unwrap(),
            encode(&None::<String>).unwrap(),
        ] {
            assert_ne!(v.last(), Some(&RAW_STR), "{v:?}");
            assert_eq!(
                decode_owned::<serde_json::Value>(v.clone()).unwrap(),
                serde_json::from_slice::<serde_json::Value>(&v).unwrap()
            );
        }
        // A raw string decodes into JSON's own value as a JSON string would.
        let v: serde_json::Value = decode(&encode("hi").unwrap()).unwrap();
        assert_eq!(v, serde_json::json!("hi"));
    }

    #[test]
    fn bad_payloads_are_errors_naming_why() {
        let e = decode::<String>(&[0xff, 0xfe, RAW_STR]).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let e = decode_owned::<String>(vec![0xff, 0xfe, RAW_STR]).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        assert!(decode_owned::<String>(Vec::new()).is_err());
        let e = decode::<u32>(&encode("twelve").unwrap()).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        assert!(decode::<String>(b"{not json").is_err());
    }
}
