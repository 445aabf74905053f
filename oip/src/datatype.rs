//! The protocol's tensor element types (`BOOL`, `UINT8`..`UINT64`,
//! `INT8`..`INT64`, `FP16`, `FP32`, `FP64`, `BYTES`), and how they map to
//! the element types a tiffin array holds ([`DType`]).
//!
//! Every name the protocol defines is recognised, so a request that names
//! one a model does not take is told so ("takes FP32, received BOOL")
//! rather than that the name is unknown.

use tiffin_service::DType;

/// A tensor element type, as the protocol spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// `BOOL`: one byte, 0 or 1.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16`: IEEE half precision.
    Fp16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES`: strings, each length-prefixed in binary form.
    Bytes,
}

/// Every datatype with its protocol name and numpy name.
const TABLE: [(Datatype, &str, &str); 13] = [
    (Datatype::Bool, "BOOL", "bool"),
    (Datatype::Uint8, "UINT8", "uint8"),
    (Datatype::Uint16, "UINT16", "uint16"),
    (Datatype::Uint32, "UINT32", "uint32"),
    (Datatype::Uint64, "UINT64", "uint64"),
    (Datatype::Int8, "INT8", "int8"),
    (Datatype::Int16, "INT16", "int16"),
    (Datatype::Int32, "INT32", "int32"),
    (Datatype::Int64, "INT64", "int64"),
    (Datatype::Fp16, "FP16", "float16"),
    (Datatype::Fp32, "FP32", "float32"),
    (Datatype::Fp64, "FP64", "float64"),
    (Datatype::Bytes, "BYTES", "object"),
];

impl Datatype {
    /// The datatype the protocol spells `name` (`FP32`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, p, _)| *p == name)
            .map(|(d, _, _)| *d)
    }

    /// The datatype of numpy's element type `name` (`float32`, ...; `str`
    /// and `string` are `BYTES` too).
    pub fn from_numpy(name: &str) -> Option<Self> {
        match name {
            "str" | "string" | "bytes" => Some(Datatype::Bytes),
            _ => TABLE
                .iter()
                .find(|(_, _, n)| *n == name)
                .map(|(d, _, _)| *d),
        }
    }

    /// The protocol's name.
    pub fn as_str(self) -> &'static str {
        TABLE
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or("BYTES", |(_, p, _)| p)
    }

    /// The element type of a tiffin array of this datatype, if it has one.
    pub fn dtype(self) -> Option<DType> {
        match self {
            Datatype::Fp32 => Some(DType::Float32),
            Datatype::Fp64 => Some(DType::Float64),
            Datatype::Int32 => Some(DType::Int32),
            Datatype::Int64 => Some(DType::Int64),
            _ => None,
        }
    }

    /// The datatype of a tiffin array's elements.
    pub fn of(dtype: DType) -> Self {
        match dtype {
            DType::Float32 => Datatype::Fp32,
            DType::Float64 => Datatype::Fp64,
            DType::Int32 => Datatype::Int32,
            DType::Int64 => Datatype::Int64,
        }
    }

    /// Bytes per element in binary form; `None` for `BYTES`, whose
    /// elements each carry their own length.
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => Some(1),
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 => Some(2),
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => Some(4),
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => Some(8),
            Datatype::Bytes => None,
        }
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_name_round_trips_and_numpy_names_map_to_it() {
        for (d, p, n) in TABLE {
            assert_eq!(Datatype::parse(p), Some(d));
            assert_eq!(d.as_str(), p);
            assert_eq!(Datatype::from_numpy(n), Some(d));
        }
        assert_eq!(Datatype::parse("fp32"), None);
        assert_eq!(Datatype::from_numpy("str"), Some(Datatype::Bytes));
    }

    #[test]
    fn array_dtypes_map_both_ways() {
        for dtype in [DType::Float32, DType::Float64, DType::Int32, DType::Int64] {
            assert_eq!(Datatype::of(dtype).dtype(), Some(dtype));
        }
        assert_eq!(Datatype::Bool.dtype(), None);
    }
}
