//! `digits_classifier`: a real image model, the example that ends BentoML's
//! metrics guide (`curl -X POST -F "image=@digit.png" localhost:3000/predict`).
//!
//! The model is `models/digits/digits.onnx`, a small multilayer perceptron
//! trained by `models/train.py` on scikit-learn's handwritten digits (8x8
//! grayscale, 1,797 images) and compiled into the binary, so the service
//! needs no file at run time. Its runner `digits_clf` loads it with
//! `tiffin-onnx` (tract) in each worker and serves the batchable method
//! `run`: concurrent requests are stacked into one `[n, 64]` tensor.
//!
//! `POST /predict` takes an image (the `image` field of a multipart form, or
//! a PNG/JPEG body; see `tiffin_service::image` for limits and errors). The
//! API server turns it into the model's input: grayscale, averaged down to
//! 8x8, and inverted when its border is light (the training images are light
//! ink on a dark ground; a photo of a digit on paper is the opposite). The
//! answer is `{"digit": 3, "probability": 0.98, "probabilities": [... 10]}`.

use std::path::Path;

use tiffin_onnx::{OnnxModel, Outputs, RUN_METHOD, runnable};
use tiffin_service::image::DynamicImage;
use tiffin_service::serde::{Deserialize, Serialize};
use tiffin_service::{ApiError, Image, JsonOf, NdArray, NdData, Runner, Service};

/// The model, as committed (`models/train.py` regenerates it).
pub const DIGITS_ONNX: &[u8] = include_bytes!("../../models/digits/digits.onnx");

/// The side of the model's square input image.
pub const SIDE: u32 = 8;

/// The answer of `POST /predict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "tiffin_service::serde")]
pub struct Prediction {
    /// The most likely digit.
    pub digit: i64,
    /// Its probability.
    pub probability: f32,
    /// The probability of each digit, 0 to 9.
    pub probabilities: Vec<f32>,
}

/// The model's input for an image: one row of 64 pixels in 0..=255, 255
/// being ink (see the module docs).
pub fn pixels(image: &DynamicImage) -> Vec<f32> {
    let gray = image.to_luma8();
    let (w, h) = gray.dimensions();
    let mut out = Vec::with_capacity((SIDE * SIDE) as usize);
    for oy in 0..SIDE {
        let y0 = oy * h / SIDE;
        let y1 = ((oy + 1) * h / SIDE).max(y0 + 1).min(h.max(1));
        for ox in 0..SIDE {
            let x0 = ox * w / SIDE;
            let x1 = ((ox + 1) * w / SIDE).max(x0 + 1).min(w.max(1));
            let mut sum = 0u64;
            let mut n = 0u64;
            for y in y0..y1 {
                for x in x0..x1 {
                    sum += u64::from(gray.get_pixel(x, y).0[0]);
                    n += 1;
                }
            }
            out.push(if n == 0 { 0.0 } else { sum as f32 / n as f32 });
        }
    }
    let side = SIDE as usize;
    let border: Vec<f32> = (0..side * side)
        .filter(|i| i / side == 0 || i / side == side - 1 || i % side == 0 || i % side == side - 1)
        .map(|i| out[i])
        .collect();
    let mean = border.iter().sum::<f32>() / border.len() as f32;
    if mean > 127.5 {
        for p in &mut out {
            *p = 255.0 - *p;
        }
    }
    out
}

fn prediction(outputs: Outputs) -> Result<Prediction, ApiError> {
    let mut digit = None;
    let mut probabilities = None;
    for (name, array) in outputs {
        match (name.as_str(), array.into_parts().1) {
            ("label", NdData::Int64(v)) => digit = v.first().copied(),
            ("probabilities", NdData::Float32(v)) => probabilities = Some(v),
            _ => {}
        }
    }
    match (digit, probabilities) {
        (Some(digit), Some(probabilities)) => {
            let probability = usize::try_from(digit)
                .ok()
                .and_then(|d| probabilities.get(d).copied())
                .unwrap_or(0.0);
            Ok(Prediction {
                digit,
                probability,
                probabilities,
            })
        }
        _ => Err(ApiError::internal(
            "the digits model did not answer a label and probabilities",
        )),
    }
}

/// `POST /predict` (image) → runner `digits_clf.run` → a [`Prediction`].
pub fn service() -> Service {
    let clf = Runner::try_new("digits_clf", || {
        let name = Path::new("models/digits/digits.onnx (compiled into tiffin)");
        OnnxModel::load_bytes(name, DIGITS_ONNX)
            .map(runnable)
            .map_err(|e| e.to_string())
    });
    let run = clf.method::<NdArray, Outputs>(RUN_METHOD);
    Service::new("digits_classifier").runner(&clf).api(
        "predict",
        Image,
        JsonOf::<Prediction>::new(),
        move |image: DynamicImage| {
            let call = NdArray::new(vec![1, 64], NdData::Float32(pixels(&image)))
                .map(|input| run.call(input));
            async move {
                let outputs = call.map_err(|e| ApiError::internal(e.to_string()))?.await?;
                prediction(outputs)
            }
        },
    )
}
