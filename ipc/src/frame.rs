//! Length-prefixed frames carrying bincode messages: the wire format of every
//! Unix socket in tiffin.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a
//! `bincode` 2 (serde mode) encoding of one message. The length prefix is
//! checked against a maximum *before* any buffer is reserved, so a hostile or
//! corrupt peer cannot make a process allocate gigabytes; an oversized or
//! undecodable frame is an error for that connection only, and the caller
//! closes it.

use std::io;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest frame accepted by default (64 MiB): bigger than any request body
/// allowed by default, small enough that one bad header cannot exhaust memory.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket itself failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The length prefix announced more than the configured maximum.
    #[error("frame larger than the maximum of {max} bytes")]
    TooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// The payload was not a valid message of the expected type.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The message could not be encoded (should not happen for our types).
    #[error("could not encode frame: {0}")]
    Encode(String),
}

/// A tokio-util codec that turns frames into messages of type `In` and
/// messages of type `Out` into frames.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    inner: LengthDelimitedCodec,
    max: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec rejecting frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(max_frame)
            .new_codec();
        Self {
            inner,
            max: max_frame,
            _types: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

/// Most bytes that decoding one message may claim. Without a limit bincode
/// allocates a string or byte vector of whatever length its prefix says before
/// reading it, so a frame of a few bytes could ask for gigabytes (an abort) or
/// for more than `isize::MAX` (a panic). Bincode counts each value at its size
/// in memory (8 bytes for a `u64` sent as 1), hence twice the frame limit: a
/// message that fits in a frame is not refused.
const DECODE_LIMIT: usize = 2 * DEFAULT_MAX_FRAME;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes one message the way frames carry it (without the length prefix).
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    bincode::serde::encode_to_vec(msg, bincode_config())
        .map_err(|e| FrameError::Encode(e.to_string()))
}

/// Encodes one message as a whole frame, length prefix included, in one
/// buffer: a writer can send it as it is, with no copy of the payload into
/// an encoder's write buffer (a megabyte per direction for a 1 MB body).
/// The only place that lays out a frame; [`FrameCodec`]'s encoder uses it.
///
/// A first pass counts the bytes (cheap: nothing is written), so the prefix
/// is known before the payload and the buffer is allocated once at its
/// final size instead of doubling its way there.
pub fn encode_frame<T: Serialize>(msg: &T, max_frame: usize) -> Result<Bytes, FrameError> {
    let encode_error = |e: bincode::error::EncodeError| FrameError::Encode(e.to_string());
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut size, bincode_config()).map_err(encode_error)?;
    let len = size.bytes_written;
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= max_frame)
        .ok_or(FrameError::TooLarge { max: max_frame })?;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&prefix.to_be_bytes());
    bincode::serde::encode_into_std_write(msg, &mut frame, bincode_config())
        .map_err(encode_error)?;
    Ok(Bytes::from(frame))
}

/// Decodes one message from a frame's payload, rejecting trailing bytes.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after message",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.inner.decode(src) {
            Ok(Some(frame)) => decode_message(&frame).map(Some),
            Ok(None) => Ok(None),
            // LengthDelimitedCodec reports an oversized header as InvalidData.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(FrameError::TooLarge { max: self.max })
            }
            Err(e) => Err(FrameError::Io(e)),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.extend_from_slice(&encode_frame(&item, self.max)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Call {
            id: u64,
            method: String,
            body: Vec<u8>,
        },
        Ping,
    }

    type Codec = FrameCodec<Msg, Msg>;

    /// A call whose body is `len` bytes of `byte`.
    fn call(byte: u8, len: usize) -> Msg {
        Msg::Call {
            id: 9,
            method: "m".into(),
            body: vec![byte; len],
        }
    }

    #[test]
    fn a_whole_frame_is_a_big_endian_length_then_the_message() {
        let frame = encode_frame(&call(7, 300), 1024).unwrap();
        let payload = encode_message(&call(7, 300)).unwrap();
        assert_eq!(&frame[..4], &(payload.len() as u32).to_be_bytes());
        assert_eq!(&frame[4..], &payload[..]);
        let mut buf = BytesMut::from(&frame[..]);
        assert_eq!(
            Codec::new(1024).decode(&mut buf).unwrap(),
            Some(call(7, 300))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_whole_frame_past_the_limit_is_refused() {
        assert!(matches!(
            encode_frame(&call(0, 2000), 1024),
            Err(FrameError::TooLarge { max: 1024 })
        ));
    }

    #[test]
    fn round_trip_many_frames_in_one_buffer() {
        let mut codec = Codec::new(1024);
        let mut buf = BytesMut::new();
        let msgs = vec![
            Msg::Call {
                id: 7,
                method: "is_positive".into(),
                body: b"hi".to_vec(),
            },
            Msg::Ping,
            Msg::Call {
                id: u64::MAX,
                method: String::new(),
                body: vec![0; 300],
            },
        ];
        for m in &msgs {
            let copy = decode_message::<Msg>(&encode_message(m).unwrap()).unwrap();
            codec.encode(copy, &mut buf).unwrap();
        }
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            out.push(m);
        }
        assert_eq!(out, msgs);
        assert!(buf.is_empty());
    }

    #[test]
    fn truncated_frame_waits_for_more_bytes() {
        let mut codec = Codec::new(1024);
        let mut full = BytesMut::new();
        codec
            .encode(
                Msg::Call {
                    id: 1,
                    method: "m".into(),
                    body: vec![1, 2, 3],
                },
                &mut full,
            )
            .unwrap();
        let total = full.len();
        for cut in 0..total {
            // A fresh codec per cut: the codec remembers a header it already read.
            let mut part = BytesMut::from(&full[..cut]);
            assert!(
                Codec::new(1024).decode(&mut part).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        // Bytes trickling in one at a time still yield exactly one message.
        let mut stream = BytesMut::new();
        let mut got = Vec::new();
        for b in full.iter() {
            stream.extend_from_slice(&[*b]);
            if let Some(m) = codec.decode(&mut stream).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn oversized_header_is_rejected_without_allocating() {
        let mut codec = Codec::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(b"xx");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { max: 1024 })
        ));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn oversized_message_is_not_sent() {
        let mut codec = Codec::new(64);
        let mut buf = BytesMut::new();
        let big = Msg::Call {
            id: 1,
            method: "m".into(),
            body: vec![0; 100],
        };
        assert!(matches!(
            codec.encode(big, &mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let mut codec = Codec::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::Decode(_))));
    }

    #[test]
    fn huge_length_prefix_is_a_decode_error() {
        // Found by fuzz/ (target `frame`): the string length was allocated before being read.
        for len in [u64::MAX, 1 << 40, 3 * DEFAULT_MAX_FRAME as u64] {
            let mut payload = vec![0, 7, 0xfd]; // Msg::Call, id 7, a u64 length follows
            payload.extend_from_slice(&len.to_le_bytes());
            payload.extend_from_slice(b"is_positive");
            assert!(matches!(
                decode_message::<Msg>(&payload),
                Err(FrameError::Decode(_))
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_a_decode_error() {
        let mut payload = encode_message(&Msg::Ping).unwrap();
        payload.push(0);
        assert!(matches!(
            decode_message::<Msg>(&payload),
            Err(FrameError::Decode(_))
        ));
    }
}
