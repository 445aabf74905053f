//! `sentiment_analyzer`: the service from BentoML's metrics guide, with its
//! two custom metrics.
//!
//! The runner `nltk_sentiment` scores each sentence with VADER
//! (`tiffin_vader`, whose scores are identical to Python's vaderSentiment
//! 3.3.2, checked by tests/it/vader.rs) and answers
//! whether the mean compound score is positive, observing
//! `inference_duration` in the runner worker. The `analysis` API counts
//! `polarity_total` in the API server.

use std::time::Instant;

use serde_json::json;
use tiffin_metrics::{Counter, DEFAULT_DURATION_BUCKETS, Histogram};
use tiffin_service::{Json, Runnable, Runner, Service, Text};

/// Label value for `nltk_version`: what does the scoring, like BentoML's `nltk.__version__`.
const SCORER_VERSION: &str = "tiffin-vader-3.3.2";

static INFERENCE_DURATION: Histogram = Histogram::lazy(
    "inference_duration",
    "Duration of inference",
    &["nltk_version", "sentiment_cls"],
    &DEFAULT_DURATION_BUCKETS,
);

static POLARITY: Counter = Counter::lazy(
    "polarity_total",
    "Count total number of analysis by polarity scores",
    &["polarity"],
);

/// Splits text into sentences the way a reader would: after `.`, `!` or `?`
/// followed by whitespace (a light stand-in for `nltk.sent_tokenize`).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?') {
            let mut end = i + 1;
            while end < bytes.len() && matches!(bytes[end], b'.' | b'!' | b'?') {
                end += 1;
            }
            if end == bytes.len() || bytes[end].is_ascii_whitespace() {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
            }
            i = end;
        } else {
            i += 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Mean VADER compound score of the sentences is positive.
pub fn is_positive(text: &str) -> bool {
    let scores: Vec<f64> = sentences(text)
        .iter()
        .map(|s| tiffin_vader::compound(s))
        .collect();
    if scores.is_empty() {
        return false;
    }
    scores.iter().sum::<f64>() / scores.len() as f64 > 0.0
}

fn load() -> Runnable {
    // The lexicon is parsed when the runner loads, not in the first call's
    // inference_duration.
    tiffin_vader::load();
    Runnable::new().method("is_positive", move |text: String| {
        let start = Instant::now();
        let positive = is_positive(&text);
        INFERENCE_DURATION
            .with(&[
                ("nltk_version", SCORER_VERSION),
                ("sentiment_cls", "SentimentIntensityAnalyzer"),
            ])
            .observe(start.elapsed().as_secs_f64());
        positive
    })
}

/// The `sentiment_analyzer` service.
pub fn service() -> Service {
    let nltk = Runner::new("nltk_sentiment", load);
    let is_positive = nltk.method::<String, bool>("is_positive");
    Service::new("sentiment_analyzer").runner(&nltk).api(
        "analysis",
        Text,
        Json,
        move |text: String| {
            let call = is_positive.call(text);
            async move {
                let positive = call.await?;
                POLARITY
                    .with(&[("polarity", if positive { "True" } else { "False" })])
                    .inc();
                Ok(json!({ "is_positive": positive }))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("This is terrible. I hate it."),
            vec!["This is terrible.", "I hate it."]
        );
        assert_eq!(
            sentences("Wow!! Great... ok"),
            vec!["Wow!!", "Great...", "ok"]
        );
        assert_eq!(sentences("3.5 stars"), vec!["3.5 stars"]);
        assert!(sentences("   ").is_empty());
    }

    #[test]
    fn reference_examples() {
        assert!(is_positive("I love this product!"));
        assert!(!is_positive("This is terrible. I hate it."));
        assert!(!is_positive(""));
        // vaderSentiment's "no" rule, which the old vader_sentiment crate lacked.
        assert!(is_positive("No problems so far."));
    }
}
