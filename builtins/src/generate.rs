//! `text_generator`: a word-level language model that streams its answer
//! token by token (issue 25, docs/streaming.md), the built-in example of a
//! streaming API.
//!
//! `POST /generate` takes JSON `{"prompt": "...", "max_tokens": 50,
//! "pace_ms": 20, "seed": 0}` (all optional) and answers Server-Sent Events:
//! one `data: <token>` event per word or punctuation mark, then `event: end`.
//! The runner `bigram_lm` draws each token in its stream method's `next`,
//! after waiting `pace_ms`, so each one travels worker → API server → client
//! as it is produced, and a client that stops reading pauses the model (the
//! stream's credit window). It counts every token it produced in
//! `generated_tokens_total`, which the back-pressure test reads.
//!
//! The model is a word bigram trained by `models/train_generate.py` from the
//! prose of Python's help topics (`pydoc_data.topics`, PSF License 2.0) and
//! committed as `models/generate/bigram.json`, compiled in. Sampling is
//! SplitMix64 seeded by the request, exactly as the script samples, so a seed
//! gives the same tokens here and there (`models/generate/samples.json`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tiffin_metrics::Counter;
use tiffin_service::{ApiError, Json, Runnable, Runner, Service, StreamFormat};

/// The committed model (`models/train_generate.py`).
const MODEL_JSON: &str = include_str!("../../models/generate/bigram.json");

/// The word a prompt with no known word starts from: a sentence start.
const START: &str = ".";

/// Most tokens one request may ask for: long enough for a back-pressure
/// test, short enough that a typo cannot hold a worker thread for a day.
pub const MAX_TOKENS: u64 = 10_000_000;

/// Longest pause between two tokens a request may ask for.
pub const MAX_PACE_MS: u64 = 10_000;

static GENERATED: Counter = Counter::lazy(
    "generated_tokens_total",
    "Tokens the text_generator model produced (pulled from its stream)",
    &[],
);

/// Why the committed model cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not the JSON the training script writes.
    #[error("models/generate/bigram.json: {0}")]
    Json(#[from] serde_json::Error),
    /// The file parses but breaks the model's invariants.
    #[error("models/generate/bigram.json: {0}")]
    Invalid(String),
}

/// A word bigram: for each word, its successors and their counts.
#[derive(Debug)]
pub struct Model {
    vocab: Vec<String>,
    /// `next[i]`: (successor id, running count), counts cumulative.
    next: Vec<Vec<(usize, u64)>>,
    start: usize,
}

#[derive(Deserialize)]
struct ModelFile {
    vocab: Vec<String>,
    next: Vec<Vec<u64>>,
}

impl Model {
    /// Reads a model in the training script's format.
    pub fn parse(json: &str) -> Result<Self, ModelError> {
        let file: ModelFile = serde_json::from_str(json)?;
        if file.next.len() != file.vocab.len() {
            return Err(ModelError::Invalid(
                "one successor row per word expected".into(),
            ));
        }
        let n = file.vocab.len();
        let mut next = Vec::with_capacity(n);
        for (i, row) in file.next.iter().enumerate() {
            if row.is_empty() || row.len() % 2 != 0 {
                return Err(ModelError::Invalid(format!(
                    "word {i}: successors must be non-empty (id, count) pairs"
                )));
            }
            let mut running = 0u64;
            let mut cumulative = Vec::with_capacity(row.len() / 2);
            for pair in row.chunks_exact(2) {
                let id = usize::try_from(pair[0])
                    .ok()
                    .filter(|&id| id < n)
                    .ok_or_else(|| ModelError::Invalid(format!("word {i}: no word {}", pair[0])))?;
                if pair[1] == 0 {
                    return Err(ModelError::Invalid(format!("word {i}: a zero count")));
                }
                running += pair[1];
                cumulative.push((id, running));
            }
            next.push(cumulative);
        }
        let start = file
            .vocab
            .iter()
            .position(|w| w == START)
            .ok_or_else(|| ModelError::Invalid(format!("no {START:?} in the vocabulary")))?;
        Ok(Self {
            vocab: file.vocab,
            next,
            start,
        })
    }

    /// The committed model, compiled into the binary.
    pub fn builtin() -> Result<Self, ModelError> {
        Self::parse(MODEL_JSON)
    }

    /// Words in the vocabulary.
    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
    }

    /// The state a prompt leaves the model in: its last known word.
    fn state_after(&self, prompt: &str) -> usize {
        words(prompt)
            .filter_map(|w| self.vocab.binary_search_by(|v| v.as_str().cmp(&w)).ok())
            .last()
            .unwrap_or(self.start)
    }

    /// The tokens answering `request`, drawn one per `next` (no pace: the
    /// caller waits between them if it wants to).
    pub fn tokens<'m>(&'m self, request: &Request) -> impl Iterator<Item = &'m str> + 'm {
        let mut sampler = Sampler::new(self, request);
        (0..request.max_tokens).map(move |_| self.word(sampler.step(self)))
    }

    fn word(&self, id: usize) -> &str {
        &self.vocab[id]
    }
}

/// The tokens answering one request, owning their model: what the runner's
/// stream method and scripts/bench's bare reference server pull from.
pub struct Tokens {
    model: Arc<Model>,
    sampler: Sampler,
    left: u64,
}

impl Tokens {
    /// The tokens of `request`, none drawn yet (no pace).
    pub fn new(model: Arc<Model>, request: &Request) -> Self {
        let sampler = Sampler::new(&model, request);
        Self {
            model,
            sampler,
            left: request.max_tokens,
        }
    }
}

impl Iterator for Tokens {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.left = self.left.checked_sub(1)?;
        let id = self.sampler.step(&self.model);
        Some(self.model.word(id).to_string())
    }
}

/// Where one generation is: the last word drawn and the sampler's state.
struct Sampler {
    state: usize,
    rng: SplitMix64,
}

impl Sampler {
    fn new(model: &Model, request: &Request) -> Self {
        Self {
            state: model.state_after(&request.prompt),
            rng: SplitMix64(request.seed),
        }
    }

    /// Draws the next word's id: the first successor whose running count
    /// exceeds `next() % total`.
    fn step(&mut self, model: &Model) -> usize {
        let row = &model.next[self.state];
        let total = row.last().map_or(1, |&(_, c)| c);
        let r = self.rng.next() % total;
        let at = row.partition_point(|&(_, running)| running <= r);
        self.state = row[at.min(row.len() - 1)].0;
        self.state
    }
}

/// The training script's tokenizer: runs of ASCII letters (one inner
/// apostrophe run allowed) and single punctuation marks, lower-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let lower: Vec<char> = text.to_lowercase().chars().collect();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < lower.len() {
            let c = lower[i];
            if ".,;:?!()".contains(c) {
                i += 1;
                return Some(c.to_string());
            }
            if c.is_ascii_lowercase() {
                let mut word = String::new();
                while i < lower.len() && lower[i].is_ascii_lowercase() {
                    word.push(lower[i]);
                    i += 1;
                }
                // `'[a-z]+`, once, as the script's regex.
                if i + 1 < lower.len() && lower[i] == '\'' && lower[i + 1].is_ascii_lowercase() {
                    word.push('\'');
                    i += 1;
                    while i < lower.len() && lower[i].is_ascii_lowercase() {
                        word.push(lower[i]);
                        i += 1;
                    }
                }
                return Some(word);
            }
            i += 1;
        }
        None
    })
}

/// Sebastiano Vigna's SplitMix64 (public domain), as the training script has it.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One generation request, as `POST /generate` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    /// Text whose last known word the model continues from.
    pub prompt: String,
    /// Tokens to answer (at most [`MAX_TOKENS`]).
    pub max_tokens: u64,
    /// Milliseconds the model waits before each token (at most [`MAX_PACE_MS`]).
    pub pace_ms: u64,
    /// The sampler's seed: the same seed, the same tokens.
    pub seed: u64,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            max_tokens: 50,
            pace_ms: 0,
            seed: 0,
        }
    }
}

impl Request {
    /// Reads and checks a request body's JSON (400 when it is not one).
    pub fn from_json(value: Value) -> Result<Self, ApiError> {
        let request: Request = serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(format!(
                "expected {{\"prompt\": str, \"max_tokens\": int, \"pace_ms\": int, \"seed\": int}}: {e}"
            ))
        })?;
        if request.max_tokens > MAX_TOKENS {
            return Err(ApiError::bad_request(format!(
                "max_tokens is at most {MAX_TOKENS}"
            )));
        }
        if request.pace_ms > MAX_PACE_MS {
            return Err(ApiError::bad_request(format!(
                "pace_ms is at most {MAX_PACE_MS}"
            )));
        }
        Ok(request)
    }
}

fn load() -> Runnable {
    // The model is parsed once, when the runner loads; a broken build fails
    // every call with the reason instead of crashing the worker.
    let model = Model::builtin().map(Arc::new).map_err(|e| e.to_string());
    Runnable::new().try_stream_method("generate", move |request: Request| {
        let model = model.clone()?;
        let pace = Duration::from_millis(request.pace_ms);
        let produced = GENERATED.with(&[]);
        let tokens = Tokens::new(model, &request).map(move |token| {
            // Each token's work (and wait) is in `next`: the worker pulls it
            // only when the client has room for it.
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
            produced.inc();
            Ok::<_, String>(token)
        });
        Ok(tokens)
    })
}

/// The `text_generator` service: `POST /generate` (see the module's docs).
pub fn service() -> Service {
    let lm = Runner::new("bigram_lm", load);
    let generate = lm.method::<Request, String>("generate");
    Service::new("text_generator").runner(&lm).stream_api(
        "generate",
        Json,
        StreamFormat::EventStream,
        move |body: Value| {
            let tokens = Request::from_json(body).map(|request| generate.call_stream(request));
            async move { tokens }
        },
    )
}

#[cfg(test)]
mod tests;
