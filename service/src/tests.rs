//! Unit tests of the service model.

use bytes::Bytes;

use crate::*;

#[test]
fn method_round_trips_json_values() {
    let r = Runnable::new().method("double", |x: i64| x * 2);
    let out = r.call("double", b"21").unwrap();
    assert_eq!(out, b"42");
    assert!(matches!(
        r.call("double", b"\"x\""),
        Err(CallError::BadInput(_))
    ));
    assert!(matches!(
        r.call("nope", b"1"),
        Err(CallError::UnknownMethod(_))
    ));
}

#[test]
fn batch_method_must_return_one_output_per_input() {
    let r = Runnable::new().batch_method("bad", |xs: Vec<i64>| vec![0i64; xs.len() + 1]);
    assert!(matches!(r.call("bad", b"1"), Err(CallError::Failed(_))));
}

#[test]
fn try_method_error_fails_the_call_with_its_message() {
    let r = Runnable::new()
        .try_method("fail", |_: String| Err::<bool, _>("model exploded"))
        .try_batch_method("fail_batch", |_: Vec<i64>| {
            Err::<Vec<i64>, _>("batch exploded")
        });
    assert_eq!(
        r.call("fail", b"\"x\""),
        Err(CallError::Failed("model exploded".into()))
    );
    assert_eq!(
        r.call("fail_batch", b"1"),
        Err(CallError::Failed("batch exploded".into()))
    );
}

/// Answers every call in process by running the runnable, as a worker would.
struct InProcess(Runnable);

impl RunnerTransport for InProcess {
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>> {
        let out = self.0.call(method, &payload);
        Box::pin(async move { out })
    }
}

#[tokio::test]
async fn method_handle_calls_through_the_installed_transport() {
    let load = || Runnable::new().method("double", |x: i64| x * 2);
    let runner = Runner::new("calc", load);
    let double = runner.method::<i64, i64>("double");
    let typo = runner.method::<i64, i64>("doubel");
    let unconnected = double.call(1).await;
    assert_eq!(unconnected, Err(RunnerError::NotConnected("calc".into())));
    assert!(runner.connect(std::sync::Arc::new(InProcess(load()))));
    // The future borrows nothing: it outlives the scope of the handle.
    let call = {
        let double = runner.method::<i64, i64>("double");
        double.call(21)
    };
    assert_eq!(call.await, Ok(42));
    assert_eq!(
        typo.call(1).await,
        Err(RunnerError::Call(CallError::UnknownMethod("doubel".into())))
    );
    let as_text = runner.method::<i64, String>("double").call(1).await;
    assert!(matches!(as_text, Err(RunnerError::Codec(_))), "{as_text:?}");
}

#[test]
fn named_status_constructors_carry_their_codes() {
    assert_eq!(ApiError::bad_request("x").status, 400);
    assert_eq!(ApiError::not_found("x").status, 404);
    assert_eq!(ApiError::too_many_requests("x").status, 429);
    assert_eq!(ApiError::gateway_timeout("x").status, 504);
    let metric = tiffin_metrics::Counter::new("bad name", "x", &[]).map(|_| ());
    let err = metric.map_err(ApiError::from).unwrap_err();
    assert_eq!(err.status, 500);
    assert!(err.message.contains("bad name"), "{}", err.message);
}

#[test]
fn content_type_rules() {
    assert!(IoKind::Text.accepts(Some("text/plain; charset=utf-8")));
    assert!(IoKind::Text.accepts(None));
    assert!(!IoKind::Text.accepts(Some("application/json")));
    assert!(IoKind::Json.accepts(Some("application/json")));
    assert!(!IoKind::Json.accepts(Some("text/plain")));
}

#[tokio::test]
async fn api_handler_decodes_and_encodes() {
    let svc = Service::new("t").api("upper", Text, Text, |s: String| async move {
        Ok(s.to_uppercase())
    });
    let api = &svc.apis()[0];
    assert_eq!(api.route(), "/upper");
    let out = api.handle(Bytes::from_static(b"abc")).await.unwrap();
    assert_eq!(&out[..], b"ABC");
    let err = api
        .handle(Bytes::from_static(&[0xff, 0xfe]))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
}

#[tokio::test]
async fn calling_an_unconnected_runner_is_an_error_not_a_panic() {
    let r = Runner::new("r", Runnable::new);
    let err = r.call::<_, bool>("m", "x").await.unwrap_err();
    assert_eq!(ApiError::from(err).status, 503);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: f64,
    y: f64,
}

#[tokio::test]
async fn typed_json_decodes_straight_into_the_type_and_encodes_back() {
    let svc = Service::new("t").api(
        "flip",
        JsonOf::<Vec<Point>>::new(),
        JsonOf::<Vec<Point>>::new(),
        |points: Vec<Point>| async move {
            Ok(points
                .into_iter()
                .map(|p| Point { x: p.y, y: p.x })
                .collect())
        },
    );
    let api = &svc.apis()[0];
    assert_eq!(api.input, IoKind::Json);
    assert_eq!(api.output, IoKind::Json);
    let out = api
        .handle(Bytes::from_static(br#"[{"x": 1, "y": 2.5}]"#))
        .await
        .unwrap();
    assert_eq!(&out[..], br#"[{"x":2.5,"y":1.0}]"#);
}

#[test]
fn typed_json_tells_bad_json_from_the_wrong_shape() {
    type Points = JsonOf<Vec<Point>>;
    let err = Points::decode(Bytes::from_static(b"[{\"x\": 1,")).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.message.starts_with("body is not valid JSON: "),
        "{}",
        err.message
    );
    let err = Points::decode(Bytes::from_static(br#"[{"x": 1, "y": 2}] x"#)).unwrap_err();
    assert!(err.message.contains("not valid JSON"), "{}", err.message);

    let err = Points::decode(Bytes::from_static(br#"[{"x": 1, "y": "2"}]"#)).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.message
            .starts_with("body does not match the expected input: invalid type: string \"2\"")
            && err.message.contains("line 1 column"),
        "{}",
        err.message
    );
    let err = Points::decode(Bytes::from_static(br#"[{"x": 1}]"#)).unwrap_err();
    assert!(err.message.contains("missing field `y`"), "{}", err.message);
    assert_eq!(
        format!("{:?}", Points::new()),
        format!("JsonOf<{}>", std::any::type_name::<Vec<Point>>())
    );
}

#[test]
fn json_floats_parse_to_the_nearest_double_as_python_does() {
    // Found by fuzzing (fuzz/README.md): without serde_json's
    // `float_roundtrip` these came out one unit in the last place off.
    for (text, expected) in [
        ("500e95", 5e97_f64),
        ("1.1115111111111113e26", 1.1115111111111113e26),
        ("[0.1, 2.2250738585072014e-308]", 0.1),
    ] {
        let body = Bytes::copy_from_slice(text.as_bytes());
        let value = Json::decode(body).unwrap();
        let got = value
            .as_f64()
            .or_else(|| value[0].as_f64())
            .expect("a number");
        assert_eq!(got.to_bits(), expected.to_bits(), "{text}");
        // And back: printing and parsing again gives the same double.
        let again = Json::decode(Json::encode(value).unwrap()).unwrap();
        let again = again.as_f64().or_else(|| again[0].as_f64()).unwrap();
        assert_eq!(
            again.to_bits(),
            expected.to_bits(),
            "{text} after a round trip"
        );
    }
}
