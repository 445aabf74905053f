//! `iris_classifier`: a batchable numeric model, BentoML's quickstart service.
//!
//! The runner `iris_clf` trains a multinomial logistic regression on Fisher's
//! Iris data (150 rows, shipped in `iris.csv` next to this file; no download)
//! when its worker loads, and serves the batchable method `predict`.
//!
//! `POST /classify` takes JSON: one row `[sepal_len, sepal_wid, petal_len,
//! petal_wid]` or a list of rows `[[...], [...]]`, and answers a JSON list
//! with one class name (`setosa`, `versicolor`, `virginica`) per row; a
//! single row gets a list of one. The API server checks the shape and answers
//! 400 naming the offending row and feature, so the runner only sees valid
//! rows.
//!
//! Batching unit: one HTTP request is one call of `predict` (its item is the
//! request's rows, `Vec<[f64; 4]>`), so the dispatcher groups whole requests;
//! `predict` stacks every row of the batch into one matrix, scores it in one
//! pass, and hands each caller back its own slice of the answers.

use bytes::Bytes;
use serde_json::Value;
use tiffin_service::serde::{Deserialize, Serialize};
use tiffin_service::{
    ApiError, DType, IoDescriptor, IoKind, JsonOf, NdArray, NdData, NdSpec, NumpyNdarray, Runnable,
    Runner, Service,
};

/// The shipped data set: header, then `sepal_length,sepal_width,petal_length,petal_width,species`.
///
/// Fisher's 150 measurements as in R's `datasets::iris` and scikit-learn's
/// copy (the UCI file's two typos in rows 35 and 38 corrected).
pub const IRIS_CSV: &str = include_str!("iris.csv");

/// Class names, in label order.
pub const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// Feature names, in column order (used in error messages).
pub const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// One row of measurements in centimetres.
pub type Row = [f64; 4];

/// Parses the shipped CSV into rows and class indices.
pub fn dataset() -> Result<(Vec<Row>, Vec<usize>), String> {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in IRIS_CSV.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            return Err(format!("iris.csv line {}: expected 5 fields", i + 1));
        }
        let mut row = [0.0; 4];
        for (j, v) in fields[..4].iter().enumerate() {
            row[j] = v
                .trim()
                .parse()
                .map_err(|e| format!("iris.csv line {}: {}: {e}", i + 1, FEATURES[j]))?;
        }
        let label = CLASSES
            .iter()
            .position(|c| *c == fields[4].trim())
            .ok_or_else(|| format!("iris.csv line {}: unknown class {:?}", i + 1, fields[4]))?;
        rows.push(row);
        labels.push(label);
    }
    Ok((rows, labels))
}

/// Multinomial logistic regression on standardized features.
#[derive(Debug, Clone)]
pub struct IrisModel {
    mean: Row,
    std: Row,
    /// Per class: 4 weights then the bias.
    weights: [[f64; 5]; 3],
}

impl IrisModel {
    /// Fits by full-batch gradient descent on the softmax cross-entropy with
    /// a small L2 penalty. Deterministic: starts from zero weights.
    pub fn train(rows: &[Row], labels: &[usize]) -> Result<Self, String> {
        if rows.is_empty() || rows.len() != labels.len() {
            return Err("training data is empty or ragged".into());
        }
        let n = rows.len() as f64;
        let mut mean = [0.0; 4];
        let mut std = [0.0; 4];
        for j in 0..4 {
            mean[j] = rows.iter().map(|r| r[j]).sum::<f64>() / n;
            let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            std[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        let x: Vec<Row> = rows
            .iter()
            .map(|r| std::array::from_fn(|j| (r[j] - mean[j]) / std[j]))
            .collect();
        let mut model = IrisModel {
            mean,
            std,
            weights: [[0.0; 5]; 3],
        };
        const EPOCHS: usize = 3000;
        const RATE: f64 = 0.5;
        const L2: f64 = 1e-3;
        for _ in 0..EPOCHS {
            let mut grad = [[0.0; 5]; 3];
            for (xi, &yi) in x.iter().zip(labels) {
                let p = model.probabilities_standardized(xi);
                for (k, g) in grad.iter_mut().enumerate() {
                    let err = p[k] - if k == yi { 1.0 } else { 0.0 };
                    for j in 0..4 {
                        g[j] += err * xi[j];
                    }
                    g[4] += err;
                }
            }
            for (w, g) in model.weights.iter_mut().zip(&grad) {
                for j in 0..5 {
                    let penalty = if j < 4 { L2 * w[j] } else { 0.0 };
                    w[j] -= RATE * (g[j] / n + penalty);
                }
            }
        }
        Ok(model)
    }

    /// Trains on the shipped data set.
    pub fn from_shipped_data() -> Result<Self, String> {
        let (rows, labels) = dataset()?;
        Self::train(&rows, &labels)
    }

    fn probabilities_standardized(&self, x: &Row) -> [f64; 3] {
        let logits: [f64; 3] = std::array::from_fn(|k| {
            let w = &self.weights[k];
            w[4] + (0..4).map(|j| w[j] * x[j]).sum::<f64>()
        });
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: [f64; 3] = std::array::from_fn(|k| (logits[k] - max).exp());
        let total: f64 = exp.iter().sum();
        std::array::from_fn(|k| exp[k] / total)
    }

    /// Class probabilities of one raw row.
    pub fn probabilities(&self, row: &Row) -> [f64; 3] {
        let x: Row = std::array::from_fn(|j| (row[j] - self.mean[j]) / self.std[j]);
        self.probabilities_standardized(&x)
    }

    /// Most likely class index of one raw row.
    pub fn predict_one(&self, row: &Row) -> usize {
        let p = self.probabilities(row);
        (0..3).fold(0, |best, k| if p[k] > p[best] { k } else { best })
    }

    /// Class names of a batch of calls, each call being a list of rows: the
    /// rows of every call are scored together, then split back per call.
    pub fn predict_batch(&self, calls: &[Vec<Row>]) -> Vec<Vec<&'static str>> {
        let all: Vec<&'static str> = calls
            .iter()
            .flatten()
            .map(|row| CLASSES[self.predict_one(row)])
            .collect();
        let mut out = Vec::with_capacity(calls.len());
        let mut at = 0;
        for call in calls {
            out.push(all[at..at + call.len()].to_vec());
            at += call.len();
        }
        out
    }
}

/// A `/classify` body: one row of 4 numbers or a non-empty list of rows,
/// read as BentoML's `NumpyNdarray` reads nested lists (no
/// `serde_json::Value` tree: numbers go straight into one flat vector), then
/// held to the shape `[n, 4]` by [`NdSpec`]. Only a body that does not fit
/// is read again as a tree, to name the first row and feature at fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows;

impl IoDescriptor for Rows {
    type Value = Vec<Row>;
    const KIND: IoKind = IoKind::Json;
    fn decode(body: Bytes) -> Result<Vec<Row>, ApiError> {
        parse_rows(&body)
    }
    fn encode(rows: Vec<Row>) -> Result<Bytes, ApiError> {
        serde_json::to_vec(&rows)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("cannot encode rows: {e}")))
    }
}

/// Checks the shape of a `/classify` body: one row of 4 numbers, or a
/// non-empty list of such rows. Errors name the row index and the problem
/// (or say the body is not JSON).
pub fn parse_rows(body: &[u8]) -> Result<Vec<Row>, ApiError> {
    let rows = NdSpec {
        dtype: DType::Float64,
        shape: vec![None, Some(FEATURES.len())],
    };
    let fitted = NumpyNdarray::parse(body).ok().and_then(|array| {
        let array = match array.shape() {
            [4] => NdArray::new(vec![1, 4], array.into_parts().1).ok()?,
            [n, 4] if *n > 0 => array,
            _ => return None,
        };
        match rows.check(array).ok()?.into_parts().1 {
            NdData::Float64(values) => Some(
                values
                    .chunks_exact(4)
                    .map(|r| [r[0], r[1], r[2], r[3]])
                    .collect(),
            ),
            _ => None,
        }
    });
    match fitted {
        Some(rows) => Ok(rows),
        None => Err(ApiError::bad_request(diagnose(body))),
    }
}

/// Why a body is not rows: the message naming the first row and feature at
/// fault, read from the parsed tree (a body that failed the fast read).
fn diagnose(body: &[u8]) -> String {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return format!("body is not valid JSON: {e}"),
    };
    let Value::Array(items) = &value else {
        return format!(
            "expected a row of 4 numbers or a list of rows, got {}",
            kind(&value)
        );
    };
    let problem = match items.first() {
        None => Some("expected at least one row of 4 numbers, got an empty list".to_string()),
        Some(Value::Array(_)) => items.iter().enumerate().find_map(|(i, item)| match item {
            Value::Array(row) => row_problem(row, &format!("row {i}")),
            other => Some(format!(
                "row {i}: expected an array of 4 numbers ({}), got {}",
                FEATURES.join(", "),
                kind(other)
            )),
        }),
        Some(_) => row_problem(items, "row"),
    };
    problem.unwrap_or_else(|| "body is not a row of 4 numbers or a list of rows".to_string())
}

/// The problem with one row, if any: its count is judged before its items.
fn row_problem(row: &[Value], at: &str) -> Option<String> {
    if row.len() != FEATURES.len() {
        return Some(format!(
            "{at}: expected 4 features ({}), got {}",
            FEATURES.join(", "),
            row.len()
        ));
    }
    let (j, bad) = row.iter().enumerate().find(|(_, v)| !v.is_number())?;
    Some(format!(
        "{at}, feature {j} ({}): expected a number, got {}",
        FEATURES[j],
        kind(bad)
    ))
}

/// A JSON value's kind, as error messages name it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A class name, one byte in memory; encoded as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "tiffin_service::serde", rename_all = "lowercase")]
pub enum Class {
    /// `setosa`
    Setosa,
    /// `versicolor`
    Versicolor,
    /// `virginica`
    Virginica,
}

fn load() -> Result<Runnable, String> {
    let model = IrisModel::from_shipped_data()?;
    Ok(
        Runnable::new().batch_method("predict", move |calls: Vec<Vec<Row>>| {
            model.predict_batch(&calls)
        }),
    )
}

/// The `iris_classifier` service.
pub fn service() -> Service {
    let iris = Runner::try_new("iris_clf", load);
    let predict = iris.method::<Vec<Row>, Vec<Class>>("predict");
    Service::new("iris_classifier").runner(&iris).api(
        "classify",
        Rows,
        JsonOf::<Vec<Class>>::new(),
        move |rows: Vec<Row>| {
            let call = predict.call(rows);
            async move { Ok(call.await?) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_the_150_rows_of_fishers_iris() {
        let (rows, labels) = dataset().unwrap();
        assert_eq!(rows.len(), 150);
        for k in 0..3 {
            assert_eq!(labels.iter().filter(|&&l| l == k).count(), 50);
        }
        // Column sums of R's datasets::iris.
        let sums: Vec<f64> = (0..4).map(|j| rows.iter().map(|r| r[j]).sum()).collect();
        for (got, want) in sums.iter().zip([876.5, 458.6, 563.7, 179.9]) {
            assert!((got - want).abs() < 1e-6, "{sums:?}");
        }
    }

    #[test]
    fn accuracy_on_the_shipped_data_is_at_least_95_percent() {
        let (rows, labels) = dataset().unwrap();
        let model = IrisModel::train(&rows, &labels).unwrap();
        let correct = rows
            .iter()
            .zip(&labels)
            .filter(|(r, l)| model.predict_one(r) == **l)
            .count();
        let accuracy = correct as f64 / rows.len() as f64;
        eprintln!("iris accuracy on the shipped data: {correct}/150 = {accuracy:.4}");
        assert!(accuracy >= 0.95, "accuracy {accuracy}");
    }

    #[test]
    fn batch_prediction_splits_back_per_call_in_order() {
        let model = IrisModel::from_shipped_data().unwrap();
        let setosa = [5.1, 3.5, 1.4, 0.2];
        let versicolor = [6.4, 3.2, 4.5, 1.5];
        let virginica = [6.3, 3.3, 6.0, 2.5];
        let out = model.predict_batch(&[
            vec![setosa],
            vec![virginica, versicolor],
            vec![],
            vec![versicolor],
        ]);
        assert_eq!(
            out,
            vec![
                vec!["setosa"],
                vec!["virginica", "versicolor"],
                vec![],
                vec!["versicolor"],
            ]
        );
    }

    #[test]
    fn the_runnable_answers_a_batch_through_json() {
        let r = load().unwrap();
        let out = r.call("predict", b"[[5.1,3.5,1.4,0.2]]").unwrap();
        assert_eq!(out, br#"["setosa"]"#);
        assert!(r.call("predict", b"[[1,2,3]]").is_err());
    }

    #[test]
    fn shapes_are_checked_with_row_and_feature_named() {
        use serde_json::Value;
        let ok = |v: Value| parse_rows(v.to_string().as_bytes()).unwrap();
        let bad = |v: Value| {
            let e = parse_rows(v.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.status, 400);
            e.message
        };
        assert_eq!(ok(serde_json::json!([5.1, 3.5, 1.4, 0.2])).len(), 1);
        assert_eq!(
            ok(serde_json::json!([[5.1, 3.5, 1.4, 0.2], [1, 2, 3, 4]])).len(),
            2
        );
        let m = bad(serde_json::json!([[5.1, 3.5, 1.4, 0.2], [1, 2, 3]]));
        assert!(
            m.contains("row 1") && m.contains("expected 4 features") && m.contains("got 3"),
            "{m}"
        );
        let m = bad(serde_json::json!([[5.1, "x", 1.4, 0.2]]));
        assert!(
            m.contains("row 0, feature 1 (sepal_width)") && m.contains("a string"),
            "{m}"
        );
        let m = bad(serde_json::json!([[5.1, 3.5, 1.4, 0.2], 7]));
        assert!(m.contains("row 1") && m.contains("got a number"), "{m}");
        let m = bad(serde_json::json!([5.1, 3.5, null, 0.2]));
        assert!(
            m.contains("feature 2 (petal_length)") && m.contains("null"),
            "{m}"
        );
        let m = bad(serde_json::json!([1, 2]));
        assert!(m.contains("expected 4 features"), "{m}");
        assert!(bad(serde_json::json!([])).contains("empty"));
        assert!(bad(serde_json::json!({"rows": []})).contains("an object"));
    }

    /// The messages of the check on a parsed `serde_json::Value` tree that
    /// the typed read replaced, word for word.
    #[test]
    fn the_typed_read_gives_the_messages_of_the_tree_check() {
        let msg = |body: &str| parse_rows(body.as_bytes()).unwrap_err().message;
        let f = FEATURES.join(", ");
        assert_eq!(
            msg(r#"{"rows": 1}"#),
            "expected a row of 4 numbers or a list of rows, got an object"
        );
        for (body, kind) in [
            ("7", "a number"),
            ("\"x\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            assert_eq!(
                msg(body),
                format!("expected a row of 4 numbers or a list of rows, got {kind}")
            );
        }
        assert_eq!(
            msg("[]"),
            "expected at least one row of 4 numbers, got an empty list"
        );
        assert_eq!(
            msg("[[1,2,3,4],[1,2,3]]"),
            format!("row 1: expected 4 features ({f}), got 3")
        );
        assert_eq!(
            msg("[[1,2,3,4],{}]"),
            format!("row 1: expected an array of 4 numbers ({f}), got an object")
        );
        assert_eq!(
            msg("[[1,2,[3],4]]"),
            "row 0, feature 2 (petal_length): expected a number, got an array"
        );
        // One row: the count is judged before the items.
        assert_eq!(
            msg(r#"[1,"x"]"#),
            format!("row: expected 4 features ({f}), got 2")
        );
        assert_eq!(
            msg(r#"[1,2,{"a":[1]},true]"#),
            "row, feature 2 (petal_length): expected a number, got an object"
        );
        // The first bad row is named, and the rows after it still must be JSON.
        assert_eq!(
            msg("[[1,2,3,4],[1],[1,2,3]]"),
            format!("row 1: expected 4 features ({f}), got 1")
        );
        assert!(msg("[[1,2,3],[1,2").starts_with("body is not valid JSON"));
        assert!(msg("[[1,2,3,4]] x").starts_with("body is not valid JSON"));
        assert!(msg("[[1e999,2,3,4]]").starts_with("body is not valid JSON"));
        // Integers, negative numbers and exponents are numbers.
        assert_eq!(
            parse_rows(b"[[1, -2, 3e0, 18446744073709551615]]").unwrap(),
            vec![[1.0, -2.0, 3.0, 18446744073709551615.0]]
        );
        assert_eq!(
            parse_rows(b" [5.1, 3.5, 1.4, 0.2] ").unwrap(),
            vec![[5.1, 3.5, 1.4, 0.2]]
        );
    }

    #[test]
    fn classes_encode_as_their_names() {
        let all = [Class::Setosa, Class::Versicolor, Class::Virginica];
        let text = serde_json::to_string(&all).unwrap();
        assert_eq!(text, serde_json::to_string(&CLASSES).unwrap());
        let back: Vec<Class> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, all);
    }
}
