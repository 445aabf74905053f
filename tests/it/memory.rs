//! Large typed JSON bodies end to end (issue 11, item 4): `/classify` reads
//! its rows straight from the body (no generic JSON tree), and a body of a
//! couple of MiB gets exactly the answers its rows get in small requests.
//! Memory figures are measured by `SECTIONS=memory scripts/bench`, not here.

use crate::common;

use common::*;
use serde_json::json;
use tiffin_builtins::iris::{self, IrisModel, Row};

/// About `bytes` of JSON rows: the shipped rows, each moved by a small,
/// deterministic offset so that the rows differ and the classes vary.
fn rows_of_about(bytes: usize) -> (Vec<Row>, String) {
    let (shipped, _) = iris::dataset().unwrap();
    let mut rows = Vec::new();
    let mut size = 2;
    let mut i: u64 = 0;
    while size < bytes {
        let base = shipped[i as usize % shipped.len()];
        let row: Row = std::array::from_fn(|j| {
            let wiggle = ((i * 31 + j as u64 * 17) % 200) as f64 / 1000.0 - 0.1;
            ((base[j] + wiggle) * 1000.0).round() / 1000.0
        });
        size += json!(row).to_string().len() + 1;
        rows.push(row);
        i += 1;
    }
    let body = json!(rows).to_string();
    (rows, body)
}

fn classes(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("a JSON list of class names")
}

#[test]
fn a_large_body_gets_the_answers_of_its_rows_sent_in_small_requests() {
    let server = Launch::http(&["iris_classifier"]).start();
    let (rows, body) = rows_of_about(2 << 20);
    assert!(body.len() >= 2 << 20, "{} bytes", body.len());

    let big = classes(&server.post("/classify", "application/json", body.as_bytes()));
    assert_eq!(big.len(), rows.len());

    let mut small = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(2_000) {
        let r = server.post(
            "/classify",
            "application/json",
            json!(chunk).to_string().as_bytes(),
        );
        small.extend(classes(&r));
    }
    assert_eq!(big, small);

    // And they are the model's answers, with every class present.
    let model = IrisModel::from_shipped_data().unwrap();
    let expected: Vec<&str> = rows
        .iter()
        .map(|r| iris::CLASSES[model.predict_one(r)])
        .collect();
    assert_eq!(big, expected);
    for class in iris::CLASSES {
        assert!(big.iter().any(|c| c == class), "no {class}");
    }

    // One row alone is still a list of one answer.
    let one = classes(&server.post(
        "/classify",
        "application/json",
        json!(rows[7]).to_string().as_bytes(),
    ));
    assert_eq!(one, vec![expected[7]]);
}

#[test]
fn a_large_malformed_body_gets_a_400_naming_the_problem() {
    let server = Launch::http(&["iris_classifier"]).start();
    let (rows, _) = rows_of_about(2 << 20);
    let n = rows.len();
    let error = |body: &str| {
        let r = server.post("/classify", "application/json", body.as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        r.json()["error"].as_str().unwrap_or_default().to_string()
    };

    // A short row near the end is named by its index.
    let mut bad = rows
        .clone()
        .into_iter()
        .map(|r| json!(r))
        .collect::<Vec<_>>();
    bad[n - 3] = json!([1.0, 2.0, 3.0]);
    let m = error(&json!(bad).to_string());
    assert_eq!(
        m,
        format!(
            "row {}: expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 3",
            n - 3
        )
    );

    // A string where a number belongs: row, feature and kind are named.
    bad[n - 3] = json!([1.0, 2.0, "3", 4.0]);
    let m = error(&json!(bad).to_string());
    assert_eq!(
        m,
        format!(
            "row {}, feature 2 (petal_length): expected a number, got a string",
            n - 3
        )
    );

    // Cut short: not JSON, even though the rows read so far were fine.
    let body = json!(rows).to_string();
    let m = error(&body[..body.len() / 2]);
    assert!(m.starts_with("body is not valid JSON: "), "{m}");

    // A bad row, then broken JSON after it: the broken JSON is reported.
    let mut body = json!(bad).to_string();
    body.truncate(body.len() - 1);
    let m = error(&body);
    assert!(m.starts_with("body is not valid JSON: "), "{m}");
    assert!(m.contains("EOF"), "{m}");

    // An object is neither a row nor a list of rows.
    let m = error(r#"{"rows": [[5.1, 3.5, 1.4, 0.2]]}"#);
    assert_eq!(
        m,
        "expected a row of 4 numbers or a list of rows, got an object"
    );
}
