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

use std::sync::Arc;

use std::fmt;

use tiffin_service::serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tiffin_service::serde::ser::{self, Serializer};
use tiffin_service::serde::{Deserialize, Deserializer, Serialize};
use tiffin_service::{ApiError, JsonOf, Runnable, Runner, Service};

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

/// Kinds of JSON values, as error messages name them.
const NULL: &str = "null";
const BOOLEAN: &str = "a boolean";
const NUMBER: &str = "a number";
const STRING: &str = "a string";
const ARRAY: &str = "an array";
const OBJECT: &str = "an object";

/// A `/classify` body, read straight from the JSON text into rows (no
/// `serde_json::Value` tree): the rows, or the message naming the first row
/// and feature that does not fit.
///
/// A shape problem does not stop the read: the rest of the body is still
/// parsed (and skipped, nothing kept) so that invalid JSON anywhere answers
/// "body is not valid JSON", and the messages are exactly those of a check
/// on the parsed body.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyInput(Result<Vec<Row>, String>);

impl ClassifyInput {
    /// The rows, or a 400 naming the row index and the problem.
    pub fn into_rows(self) -> Result<Vec<Row>, ApiError> {
        self.0.map_err(ApiError::bad_request)
    }
}

/// Encodes the rows as a list of rows; an input whose check failed cannot
/// be encoded.
impl Serialize for ClassifyInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(rows) => rows.serialize(s),
            Err(message) => Err(ser::Error::custom(message)),
        }
    }
}

/// Checks the shape of a `/classify` body: one row of 4 numbers, or a
/// non-empty list of such rows. Errors name the row index and the problem
/// (or say the body is not JSON).
pub fn parse_rows(body: &[u8]) -> Result<Vec<Row>, ApiError> {
    serde_json::from_slice::<ClassifyInput>(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?
        .into_rows()
}

/// One JSON value as far as the shape check needs it.
enum Item {
    Number(f64),
    /// Any other kind, arrays included when they are not read as rows.
    Other(&'static str),
    Row(RowShape),
}

/// What one array of features turned out to be.
enum RowShape {
    Row(Row),
    /// Not 4 items: how many.
    Count(usize),
    /// 4 items, but feature `j` is not a finite number: its kind.
    Feature(usize, &'static str),
}

impl RowShape {
    /// The row, or the message naming row `index` (`None`: the body is one row).
    fn into_row(self, index: Option<usize>) -> Result<Row, String> {
        let at = || match index {
            Some(i) => format!("row {i}"),
            None => "row".to_string(),
        };
        match self {
            RowShape::Row(row) => Ok(row),
            RowShape::Count(n) => Err(format!(
                "{}: expected 4 features ({}), got {n}",
                at(),
                FEATURES.join(", ")
            )),
            RowShape::Feature(j, kind) => Err(format!(
                "{}, feature {j} ({}): expected a number, got {kind}",
                at(),
                FEATURES[j]
            )),
        }
    }
}

/// Builds a [`RowShape`] one item at a time. The count is judged before the
/// items (a row of 3 says "got 3" whatever its items are), then the first
/// item that is not a number.
struct RowBuilder {
    row: Row,
    count: usize,
    bad: Option<(usize, &'static str)>,
}

impl RowBuilder {
    fn new() -> Self {
        Self {
            row: [0.0; 4],
            count: 0,
            bad: None,
        }
    }

    fn push(&mut self, item: Item) {
        let kind = match item {
            Item::Number(x) if x.is_finite() => {
                if let Some(slot) = self.row.get_mut(self.count) {
                    *slot = x;
                }
                None
            }
            Item::Number(_) => Some(NUMBER),
            Item::Other(kind) => Some(kind),
            Item::Row(_) => Some(ARRAY),
        };
        if let Some(kind) = kind {
            self.bad.get_or_insert((self.count, kind));
        }
        self.count += 1;
    }

    fn finish(self) -> RowShape {
        match (self.count, self.bad) {
            (4, None) => RowShape::Row(self.row),
            (4, Some((j, kind))) => RowShape::Feature(j, kind),
            (n, _) => RowShape::Count(n),
        }
    }
}

/// Reads one [`Item`]; `rows`: whether an array is read as a row of
/// features (else it is skipped and named).
#[derive(Clone, Copy)]
struct ReadItem {
    rows: bool,
}

impl<'de> DeserializeSeed<'de> for ReadItem {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadItem {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item, E> {
        Ok(Item::Other(BOOLEAN))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
        Ok(Item::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
        Ok(Item::Number(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Item, E> {
        Ok(Item::Number(v))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Item, E> {
        Ok(Item::Other(STRING))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Other(NULL))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Item::Other(OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        if !self.rows {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Item::Other(ARRAY));
        }
        let mut row = RowBuilder::new();
        while let Some(item) = seq.next_element_seed(ReadItem { rows: false })? {
            row.push(item);
        }
        Ok(Item::Row(row.finish()))
    }
}

impl<'de> Deserialize<'de> for ClassifyInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Body;
        impl<'de> Visitor<'de> for Body {
            type Value = ClassifyInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row of 4 numbers or a list of rows")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ClassifyInput, A::Error> {
                read_body(seq).map(ClassifyInput)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ClassifyInput, A::Error> {
                not_a_list(ReadItem { rows: false }.visit_map(map)?)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_bool(v)?)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_i64(v)?)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_u64(v)?)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_f64(v)?)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_str(v)?)
            }
            fn visit_unit<E: de::Error>(self) -> Result<ClassifyInput, E> {
                not_a_list(ReadItem { rows: false }.visit_unit()?)
            }
        }
        d.deserialize_any(Body)
    }
}

/// The input for a body that is not an array.
fn not_a_list<E>(item: Item) -> Result<ClassifyInput, E> {
    let kind = match item {
        Item::Number(_) => NUMBER,
        Item::Other(kind) => kind,
        Item::Row(_) => ARRAY,
    };
    Ok(ClassifyInput(Err(format!(
        "expected a row of 4 numbers or a list of rows, got {kind}"
    ))))
}

/// Reads the body's top-level array: its first item says whether it is a
/// list of rows (an array) or one row. After the first problem the rest is
/// skipped; the outer `Err` is a JSON error, the inner one a shape problem.
fn read_body<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Result<Vec<Row>, String>, A::Error> {
    let outcome = match seq.next_element_seed(ReadItem { rows: true })? {
        None => Err("expected at least one row of 4 numbers, got an empty list".to_string()),
        Some(Item::Row(first)) => {
            let mut rows = Vec::new();
            let mut next = Some(Item::Row(first));
            let mut index = 0;
            loop {
                let Some(item) = next else { break Ok(rows) };
                let row = match item {
                    Item::Row(shape) => shape.into_row(Some(index)),
                    Item::Number(_) => Err(not_a_row(index, NUMBER)),
                    Item::Other(kind) => Err(not_a_row(index, kind)),
                };
                match row {
                    Ok(row) => rows.push(row),
                    Err(message) => break Err(message),
                }
                index += 1;
                next = seq.next_element_seed(ReadItem { rows: true })?;
            }
        }
        Some(first) => {
            let mut row = RowBuilder::new();
            row.push(first);
            while let Some(item) = seq.next_element_seed(ReadItem { rows: false })? {
                row.push(item);
            }
            row.finish().into_row(None).map(|row| vec![row])
        }
    };
    // Whatever is left after a problem is still read, to find bad JSON.
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(outcome)
}

fn not_a_row(index: usize, kind: &str) -> String {
    format!(
        "row {index}: expected an array of 4 numbers ({}), got {kind}",
        FEATURES.join(", ")
    )
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
    let model = Arc::new(IrisModel::from_shipped_data()?);
    Ok(
        Runnable::new().batch_method("predict", move |calls: Vec<Vec<Row>>| {
            Ok::<_, String>(model.predict_batch(&calls))
        }),
    )
}

/// The `iris_classifier` service.
pub fn service() -> Service {
    let iris = Runner::try_new("iris_clf", load);
    let runner = iris.clone();
    Service::new("iris_classifier").runner(&iris).api(
        "classify",
        JsonOf::<ClassifyInput>::new(),
        JsonOf::<Vec<Class>>::new(),
        move |input: ClassifyInput| {
            let runner = runner.clone();
            async move {
                let rows = input.into_rows()?;
                let classes: Vec<Class> = runner.call("predict", rows).await?;
                Ok(classes)
            }
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
