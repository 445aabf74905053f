use super::*;

/// One of the training script's own generations (models/generate/samples.json).
#[derive(Deserialize)]
struct Sample {
    prompt: String,
    max_tokens: u64,
    seed: u64,
    tokens: Vec<String>,
}

#[test]
fn generates_what_the_training_script_generates_for_the_same_seed() {
    let model = Model::builtin().expect("the committed model parses");
    let samples: Vec<Sample> =
        serde_json::from_str(include_str!("../../../models/generate/samples.json"))
            .expect("samples.json");
    assert!(samples.len() >= 5);
    for s in samples {
        let request = Request {
            prompt: s.prompt.clone(),
            max_tokens: s.max_tokens,
            pace_ms: 0,
            seed: s.seed,
        };
        let got: Vec<&str> = model.tokens(&request).collect();
        assert_eq!(got, s.tokens, "prompt {:?} seed {}", s.prompt, s.seed);
    }
}

#[test]
fn different_seeds_give_different_texts_and_the_prompt_matters() {
    let model = Model::builtin().expect("model");
    let text = |prompt: &str, seed| {
        let r = Request {
            prompt: prompt.into(),
            max_tokens: 30,
            seed,
            ..Request::default()
        };
        model.tokens(&r).collect::<Vec<_>>().join(" ")
    };
    assert_ne!(text("the", 1), text("the", 2));
    assert_ne!(text("the exception", 3), text("the class", 3));
    assert_eq!(text("the", 5), text("the", 5));
}

#[test]
fn tokenizes_as_the_training_script_does() {
    let got: Vec<String> = words("The object's __dict__, (e.g. x2)!").collect();
    assert_eq!(
        got,
        [
            "the", "object's", "dict", ",", "(", "e", ".", "g", ".", "x", ")", "!"
        ]
    );
}

#[test]
fn requests_are_checked() {
    let ok = Request::from_json(serde_json::json!({"prompt": "a", "seed": 3})).expect("ok");
    assert_eq!((ok.max_tokens, ok.pace_ms, ok.seed), (50, 0, 3));
    for bad in [
        serde_json::json!({"max_tokens": -1}),
        serde_json::json!({"max_tokens": MAX_TOKENS + 1}),
        serde_json::json!({"pace_ms": MAX_PACE_MS + 1}),
        serde_json::json!({"tokens": 5}),
        serde_json::json!("text"),
    ] {
        assert_eq!(
            Request::from_json(bad.clone()).map_err(|e| e.status),
            Err(400),
            "{bad}"
        );
    }
}

#[test]
fn a_broken_model_file_is_an_error_not_a_panic() {
    for bad in [
        "{",
        r#"{"vocab": ["."], "next": []}"#,
        r#"{"vocab": ["."], "next": [[]]}"#,
        r#"{"vocab": ["."], "next": [[5, 1]]}"#,
        r#"{"vocab": ["."], "next": [[0, 0]]}"#,
        r#"{"vocab": ["a"], "next": [[0, 1]]}"#,
    ] {
        assert!(Model::parse(bad).is_err(), "{bad}");
    }
}
