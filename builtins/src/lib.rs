//! The built-in services, usable with no code: `sentiment_analyzer` (the
//! default, BentoML's metrics-guide example), `echo` (for benchmarks) and
//! `iris_classifier` (a logistic regression with a batchable method) and
//! `digits_classifier` (an ONNX image model taking uploads) and
//! `text_generator` (a word-level language model streaming its tokens).

pub mod digits;
pub mod echo;
pub mod generate;
pub mod iris;
pub mod sentiment;

use tiffin_service::Service;

/// Every built-in service, the default first.
pub fn builtin() -> Vec<Service> {
    vec![
        sentiment::service(),
        echo::service(),
        iris::service(),
        digits::service(),
        generate::service(),
    ]
}
