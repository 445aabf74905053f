//! The checks behind tiffin's fuzz targets, one function per target.
//!
//! Each `src/bin/<target>.rs` hands AFL++'s input to one of these functions
//! (`afl::fuzz!`); a panic or an abort is a crash. Keeping the checks in the
//! library lets the corpus generator (`src/bin/gen_corpus.rs`) run the same
//! code over the seeds it writes.
//!
//! Every target also runs under [`CappedAlloc`], which aborts on any single
//! allocation larger than [`ALLOC_CAP`]: the frame codec may reserve a whole
//! frame up to [`DEFAULT_MAX_FRAME`] once its header has been checked, and
//! bincode may claim up to twice that while it decodes one message (its
//! limit in `ipc/src/frame.rs`); nothing may allocate more, whatever the
//! input says.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Debug;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tiffin_config::{Config, ConfigError, parse_options};
use tiffin_ipc::Envelope;
use tiffin_ipc::frame::{
    DEFAULT_MAX_FRAME, FrameCodec, FrameError, decode_message, encode_message,
};
use tiffin_ipc::proto::{DataRequest, DataResponse, FromSupervisor, ToSupervisor};
use tiffin_metrics::Format;
use tiffin_service::{Binary, IoDescriptor, IoKind, Json, Text};
use tokio_util::codec::{Decoder, Encoder};

/// Largest single allocation any target may make: bincode's decoding limit
/// (twice [`DEFAULT_MAX_FRAME`]), plus slack.
pub const ALLOC_CAP: usize = 2 * DEFAULT_MAX_FRAME + (4 << 20);

/// The system allocator, aborting on an allocation larger than [`ALLOC_CAP`]
/// (AFL++ records the abort as a crash).
pub struct CappedAlloc;

fn check_size(size: usize) {
    if size > ALLOC_CAP {
        // No formatting here: it could allocate inside the allocator.
        let _ = std::io::stderr().write_all(
            b"tiffin-fuzz: allocation larger than ALLOC_CAP (2 x DEFAULT_MAX_FRAME + 4 MiB)\n",
        );
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the size check only aborts the process.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: same layout as given to us, per the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// ---------------------------------------------------------------------------
// frame: bytes from a peer -> FrameCodec<Envelope<M>, ()>, for each message type
// ---------------------------------------------------------------------------

/// The `frame` target: `data` as the bytes a peer wrote on a control or a
/// data socket, decoded as each of the four message types.
///
/// Checks, for each type: decoding never panics and never allocates more than
/// [`ALLOC_CAP`]; the same bytes give the same messages and the same error
/// whether they arrive at once or three bytes at a time (the codec keeps a
/// half-read header between calls); every decoded message re-encodes, through
/// the same codec, into a frame that decodes to the same encoding.
pub fn frame(data: &[u8]) {
    frames::<ToSupervisor>(data);
    frames::<FromSupervisor>(data);
    frames::<DataRequest>(data);
    frames::<DataResponse>(data);
}

/// What a stream of bytes decoded to: each message re-encoded, then how it ended.
#[derive(Debug, PartialEq)]
struct Decoded {
    messages: Vec<Vec<u8>>,
    /// `None`: every complete frame decoded (maybe a partial one left over).
    error: Option<String>,
}

fn frames<M: Serialize + DeserializeOwned + Debug>(data: &[u8]) {
    let whole = decode_stream::<M>(data, data.len().max(1));
    let trickled = decode_stream::<M>(data, 3);
    assert_eq!(
        whole,
        trickled,
        "{}: decoding depends on how the bytes are split",
        std::any::type_name::<M>()
    );
}

fn decode_stream<M: Serialize + DeserializeOwned + Debug>(data: &[u8], chunk: usize) -> Decoded {
    let mut codec = FrameCodec::<Envelope<M>, ()>::default();
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        messages: Vec::new(),
        error: None,
    };
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => out.messages.push(round_trip(&msg)),
                Ok(None) => break,
                Err(e) => {
                    if let FrameError::TooLarge { max } = e {
                        assert_eq!(max, DEFAULT_MAX_FRAME);
                        // The header was refused before its length was reserved.
                        assert!(buf.capacity() <= data.len().max(64) * 2 + 64);
                    }
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
    }
    out
}

/// Re-encodes a decoded message, as a bare message and as a frame, and checks
/// that both decode back to the same encoding; returns the encoding.
fn round_trip<M: Serialize + DeserializeOwned + Debug>(msg: &Envelope<M>) -> Vec<u8> {
    let bytes = encode_message(msg).expect("a decoded message encodes");
    let again: Envelope<M> = decode_message(&bytes).expect("an encoded message decodes");
    assert_eq!(
        encode_message(&again).expect("re-encode"),
        bytes,
        "{msg:?} does not survive a round trip"
    );
    let mut codec = FrameCodec::<Envelope<M>, Envelope<M>>::default();
    let mut framed = BytesMut::new();
    codec
        .encode(again, &mut framed)
        .expect("a decoded message frames");
    let back = codec
        .decode(&mut framed)
        .expect("our own frame decodes")
        .expect("our own frame is complete");
    assert!(framed.is_empty(), "bytes left after our own frame");
    assert_eq!(encode_message(&back).expect("re-encode"), bytes);
    bytes
}

// ---------------------------------------------------------------------------
// config: YAML text and TIFFIN_CONFIG_OPTIONS text -> Config
// ---------------------------------------------------------------------------

/// The `config` target: `data` (lossy UTF-8) as a configuration file's text
/// and, separately, as `TIFFIN_CONFIG_OPTIONS`. When it holds a NUL byte,
/// the text before it is also loaded as YAML and the text after it applied
/// with [`Config::apply_override`], option by option.
///
/// Checks: loading never panics; every loaded configuration passes
/// `validate`, gives its durations and buckets without panicking, and
/// survives the trip the supervisor sends it on (YAML text in
/// `TIFFIN_EFFECTIVE_CONFIG`, parsed again by each child) unchanged; a failed
/// override leaves the configuration as it was.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    loaded(Config::from_yaml_str(&text));
    loaded(Config::from_sources(None, Some(&text), &[]));
    if let Some((yaml, options)) = text.split_once('\0') {
        let Ok(mut config) = Config::from_yaml_str(yaml) else {
            return;
        };
        let Ok(pairs) = parse_options(options) else {
            return;
        };
        for (key, value) in pairs {
            let before = config.clone();
            match config.apply_override(&key, &value) {
                Ok(()) => loaded(Ok(config.clone())),
                Err(e) => {
                    let _ = e.to_string();
                    assert_eq!(
                        yaml_of(&config),
                        yaml_of(&before),
                        "a failed override ({key}={value}) changed the configuration"
                    );
                }
            }
        }
    }
}

fn yaml_of(config: &Config) -> String {
    serde_yaml_ng::to_string(config).expect("a configuration serializes")
}

fn loaded(result: Result<Config, ConfigError>) {
    let config = match result {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    config.validate().expect("a loaded configuration is valid");
    let api = &config.api_server;
    let _ = api.graceful_timeout.duration();
    let _ = api.http.header_read_timeout.duration();
    let _ = api.http.body_read_timeout.duration();
    let _ = api.http.keepalive_timeout.duration();
    let _ = api.traffic.timeout.duration();
    assert!(!api.metrics.duration_buckets().is_empty());
    assert!(!config.runners.metrics.duration_buckets().is_empty());
    let names: Vec<&str> = config
        .runners
        .per_runner
        .keys()
        .map(String::as_str)
        .collect();
    let _ = config.runners.adaptive_batch_size_buckets(&names);
    config
        .check_runners(&names)
        .expect("its own runners are known");

    // What the supervisor hands every child, and what the child makes of it.
    let yaml = yaml_of(&config);
    let child = Config::from_yaml_str(&yaml)
        .unwrap_or_else(|e| panic!("the effective configuration does not load again: {e}\n{yaml}"));
    assert_eq!(
        yaml_of(&child),
        yaml,
        "the effective configuration changes on its way to a child"
    );
}

// ---------------------------------------------------------------------------
// io: HTTP request bodies and headers -> the IO descriptors
// ---------------------------------------------------------------------------

/// The `io` target: `data` as a request body for every IO descriptor, and
/// (lossy UTF-8) as a `Content-Type` for [`IoKind::accepts`] and an `Accept`
/// header for [`Format::from_accept`].
///
/// Checks: nothing panics; `Text` takes exactly the valid UTF-8 bodies and
/// gives them back unchanged; `Json` answers 400 or a value that encodes and
/// decodes to exactly itself (serde_json's `float_roundtrip` makes every
/// float survive printing and parsing); `Binary` is the identity; the content-type rules are
/// case-insensitive, `Bytes` takes everything and no type is both text and JSON.
pub fn io(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);

    match Text::decode(body.clone()) {
        Ok(text) => {
            assert!(std::str::from_utf8(data).is_ok());
            assert_eq!(Text::encode(text).expect("text encodes"), body);
        }
        Err(e) => {
            assert!(std::str::from_utf8(data).is_err());
            assert_eq!(e.status, 400);
        }
    }

    match Json::decode(body.clone()) {
        Ok(value) => {
            let encoded = Json::encode(value.clone()).expect("a decoded JSON value encodes");
            let again = Json::decode(encoded).expect("encoded JSON decodes");
            assert!(
                again == value,
                "JSON value changes in a round trip: {value:?} became {again:?}"
            );
        }
        Err(e) => assert_eq!(e.status, 400),
    }

    assert_eq!(Binary::decode(body.clone()).expect("binary decodes"), body);
    assert_eq!(Binary::encode(body.clone()).expect("binary encodes"), body);

    let header = String::from_utf8_lossy(data);
    let upper = header.to_ascii_uppercase();
    for kind in [IoKind::Text, IoKind::Json, IoKind::Bytes] {
        assert!(kind.accepts(None));
        assert_eq!(
            kind.accepts(Some(&header)),
            kind.accepts(Some(&upper)),
            "{kind:?}: content type matching is not case-insensitive for {header:?}"
        );
    }
    assert!(IoKind::Bytes.accepts(Some(&header)));
    assert!(!(IoKind::Text.accepts(Some(&header)) && IoKind::Json.accepts(Some(&header))));
    assert!(IoKind::Text.accepts(Some(IoKind::Text.mime())));
    assert!(IoKind::Json.accepts(Some(IoKind::Json.mime())));

    let format = Format::from_accept(Some(&header));
    assert_eq!(format, Format::from_accept(Some(&upper)));
    let _ = Format::from_accept(None);
}
