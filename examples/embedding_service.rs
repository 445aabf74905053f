//! A text-embedding service whose model has the cost structure of a neural
//! network: the case adaptive batching exists for.
//!
//! Run it with `cargo run --release --example embedding_service -- serve-http`,
//! then `curl -d 'batching pays off' localhost:3000/embed`.
//!
//! The runner `embedder` sums one pseudo-random vector per lower-cased word
//! (random indexing: the vector is drawn from a generator seeded by the
//! word's hash, so there is no vocabulary table) and maps that 256-wide
//! vector through a dense network, 256 → 4096 (ReLU) → 256, to a unit-length
//! embedding. The weights are fixed pseudo-random numbers scaled by
//! `1/sqrt(fan_in)` (random features), so the embedding is deterministic and
//! texts sharing words land close together; there is nothing to download.
//!
//! Why batching pays here and not for `iris_classifier`: one call multiplies
//! a row by 2 M weights (8 MB of `f32`), so the cost of a call is dominated
//! by walking the weights, and a batch of `n` rows walks them once. Small
//! batches use a plain row-times-matrix loop (which skips the zeros ReLU
//! leaves); from [`GEMM_FROM`] rows on, the batch is one blocked matrix
//! product (`matrixmultiply`), which reuses each weight for every row while
//! it is in cache. `scripts/bench` serves this example with batching on and
//! off.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;
use tiffin::{Json, Runnable, Runner, Service, Text};

/// Width of the summed word vectors.
pub const INPUT: usize = 256;
/// Width of the hidden layer.
pub const HIDDEN: usize = 4096;
/// Width of the embedding.
pub const OUTPUT: usize = 256;
/// From this many rows on a batch goes through the blocked matrix product;
/// below it the row loop is faster (on the 2-core bench machine the two
/// cross between 4 and 8 rows).
pub const GEMM_FROM: usize = 6;

/// A dense layer: `weights` is `inputs × outputs`, row-major.
struct Dense {
    inputs: usize,
    outputs: usize,
    weights: Vec<f32>,
}

impl Dense {
    /// Deterministic random features from a xorshift stream.
    fn random(inputs: usize, outputs: usize, seed: u64) -> Self {
        let mut state = seed | 1;
        let scale = (3.0 / inputs as f32).sqrt();
        let weights = (0..inputs * outputs)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Top 24 bits → uniform in [-scale, scale): variance 1/inputs.
                ((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect();
        Dense {
            inputs,
            outputs,
            weights,
        }
    }

    /// `rows` (`n × inputs`, row-major) times the weights, into `n × outputs`.
    fn forward(&self, rows: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(rows.len(), n * self.inputs, "input shape");
        let mut out = vec![0.0f32; n * self.outputs];
        if n >= GEMM_FROM {
            // SAFETY: `rows` holds n × inputs, `weights` inputs × outputs and
            // `out` n × outputs f32s (checked above and by construction), all
            // row-major with the strides given; `out` does not alias the inputs.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    self.inputs,
                    self.outputs,
                    1.0,
                    rows.as_ptr(),
                    self.inputs as isize,
                    1,
                    self.weights.as_ptr(),
                    self.outputs as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    self.outputs as isize,
                    1,
                );
            }
        } else {
            // out[r] = Σ_i rows[r][i] · weights[i]: one pass over the weight
            // rows, each applied to every row of the batch.
            for (i, w) in self.weights.chunks_exact(self.outputs).enumerate() {
                for (x, o) in rows
                    .chunks_exact(self.inputs)
                    .zip(out.chunks_exact_mut(self.outputs))
                {
                    let a = x[i];
                    if a != 0.0 {
                        o.iter_mut().zip(w).for_each(|(o, w)| *o += a * w);
                    }
                }
            }
        }
        out
    }
}

/// The embedding model: feature hashing, then two dense layers.
pub struct Embedder {
    hidden: Dense,
    output: Dense,
}

impl Default for Embedder {
    fn default() -> Self {
        Self::new()
    }
}

impl Embedder {
    /// Builds the network from its fixed seeds.
    pub fn new() -> Self {
        Embedder {
            hidden: Dense::random(INPUT, HIDDEN, 0x2545_f491_4f6c_dd1d),
            output: Dense::random(HIDDEN, OUTPUT, 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Sum of one pseudo-random ±1 vector per lower-cased word (seeded by
    /// the word's FNV-1a hash), L2-normalised.
    fn features(text: &str, into: &mut [f32]) {
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut state: u64 = 0xcbf2_9ce4_8422_2325;
            for b in word.to_lowercase().bytes() {
                state = (state ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            for v in into.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *v += if state >> 63 == 0 { 1.0 } else { -1.0 };
            }
        }
        normalise(into);
    }

    /// Embeddings of a batch of texts, one per text, in order.
    pub fn embed(&self, texts: &[String]) -> Vec<Vec<f32>> {
        let n = texts.len();
        let mut x = vec![0.0f32; n * INPUT];
        for (text, row) in texts.iter().zip(x.chunks_exact_mut(INPUT)) {
            Self::features(text, row);
        }
        let mut h = self.hidden.forward(&x, n);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        let y = self.output.forward(&h, n);
        y.chunks_exact(OUTPUT)
            .map(|row| {
                let mut row = row.to_vec();
                normalise(&mut row);
                row
            })
            .collect()
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn service() -> Service {
    let embedder = Runner::new("embedder", || {
        let model = Arc::new(Embedder::new());
        Runnable::new().batch_method("embed", move |texts: Vec<String>| {
            Ok::<_, String>(model.embed(&texts))
        })
    });
    let runner = embedder.clone();
    Service::new("text_embedder")
        .runner(&embedder)
        .api("embed", Text, Json, move |text: String| {
            let runner = runner.clone();
            async move {
                let embedding: Vec<f32> = runner.call("embed", text).await?;
                Ok(json!({ "embedding": embedding }))
            }
        })
}

fn main() -> ExitCode {
    tiffin::main(service())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn a_batch_gives_every_text_the_embedding_it_gets_alone() {
        let model = Embedder::new();
        let texts: Vec<String> = (0..40)
            .map(|i| format!("text number {i} about batching and models {}", i * 7))
            .collect();
        let alone: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| model.embed(std::slice::from_ref(t)).remove(0))
            .collect();
        // Sizes on both sides of GEMM_FROM, so both kernels are compared.
        for n in [2, GEMM_FROM - 1, GEMM_FROM, 17, 40] {
            let batched = model.embed(&texts[..n]);
            assert_eq!(batched.len(), n);
            for (b, a) in batched.iter().zip(&alone) {
                assert_eq!(b.len(), OUTPUT);
                let diff = b
                    .iter()
                    .zip(a)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(diff < 1e-5, "batch of {n}: off by {diff}");
            }
        }
    }

    #[test]
    fn embeddings_are_unit_length_and_similar_texts_are_closer() {
        let model = Embedder::new();
        let e = model.embed(&[
            "the cat sat on the mat".to_string(),
            "the cat sat on a mat".to_string(),
            "quarterly revenue grew by nine percent".to_string(),
            String::new(),
        ]);
        assert!((dot(&e[0], &e[0]) - 1.0).abs() < 1e-4);
        assert!(dot(&e[0], &e[1]) > dot(&e[0], &e[2]) + 0.1);
        // No words: a zero vector, not NaN.
        assert!(e[3].iter().all(|x| *x == 0.0));
    }
}
