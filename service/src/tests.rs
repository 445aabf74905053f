//! Unit tests of the service model.

use bytes::Bytes;

use futures::StreamExt;

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

    fn call_stream(&self, method: &str, payload: Vec<u8>) -> EncodedStream {
        match self.0.call_stream(method, &payload) {
            Ok(items) => futures::stream::iter(items).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
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

/// Every item of a stream method called in process, decoded, or the error.
fn drain(items: EncodedItems) -> Vec<Result<serde_json::Value, CallError>> {
    items
        .map(|item| item.map(|b| codec::decode_owned(b).unwrap()))
        .collect()
}

#[test]
fn stream_method_answers_each_output_encoded_in_order() {
    let r = Runnable::new().stream_method("count", |n: u32| (1..=n).map(|i| i * 10));
    let items = drain(r.call_stream("count", b"3").unwrap());
    assert_eq!(items, vec![Ok(10.into()), Ok(20.into()), Ok(30.into())]);
    assert!(matches!(
        r.call_stream("count", b"\"x\""),
        Err(CallError::BadInput(_))
    ));
}

#[test]
fn stream_method_items_are_computed_only_as_they_are_pulled() {
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = pulled.clone();
    let r = Runnable::new().stream_method("lazy", move |n: usize| {
        let seen = seen.clone();
        (0..n).inspect(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
    });
    let mut items = r.call_stream("lazy", b"1000").unwrap();
    assert!(items.next().is_some());
    assert!(items.next().is_some());
    drop(items);
    assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn try_stream_method_can_fail_before_its_first_item_or_after_some() {
    let r = Runnable::new().try_stream_method("words", |n: i32| {
        if n < 0 {
            return Err("negative length".to_string());
        }
        Ok((0..=n).map(move |i| {
            if i == n {
                Err(format!("ran dry at {i}"))
            } else {
                Ok(format!("w{i}"))
            }
        }))
    });
    let err = r.call_stream("words", b"-1").err();
    assert_eq!(err, Some(CallError::Failed("negative length".into())));
    let items = drain(r.call_stream("words", b"2").unwrap());
    assert_eq!(
        items,
        vec![
            Ok("w0".into()),
            Ok("w1".into()),
            Err(CallError::Failed("ran dry at 2".into()))
        ]
    );
}

#[test]
fn a_stream_method_and_a_one_result_method_refuse_each_other_s_call() {
    let r = Runnable::new()
        .stream_method("many", |n: u32| 0..n)
        .method("one", |n: u32| n);
    let err = r.call("many", b"2").unwrap_err();
    assert!(err.to_string().contains("streams its results"), "{err}");
    let err = r.call_stream("one", b"2").err().unwrap();
    assert!(err.to_string().contains("not a stream"), "{err}");
    assert!(matches!(r.get("many"), Some(MethodKind::Stream(_))));
}

#[tokio::test]
async fn method_call_stream_decodes_each_item_through_the_transport() {
    let load = || {
        Runnable::new()
            .stream_method("tokens", |text: String| {
                text.split(' ').map(str::to_owned).collect::<Vec<_>>()
            })
            .method("plain", |n: u32| n)
    };
    let runner = Runner::new("lm", load);
    let tokens = runner.method::<String, String>("tokens");
    let unconnected: Vec<_> = tokens.call_stream("a b".into()).collect().await;
    assert_eq!(
        unconnected,
        vec![Err(RunnerError::NotConnected("lm".into()))]
    );
    assert!(runner.connect(std::sync::Arc::new(InProcess(load()))));
    let items: Vec<_> = tokens.call_stream("a b c".into()).collect().await;
    assert_eq!(items, vec![Ok("a".into()), Ok("b".into()), Ok("c".into())]);
    let as_numbers: Vec<_> = runner
        .method::<String, u32>("tokens")
        .call_stream("a".into())
        .collect()
        .await;
    assert!(matches!(as_numbers[..], [Err(RunnerError::Codec(_))]));
}

#[tokio::test]
async fn a_transport_that_cannot_stream_says_so() {
    struct OneShot;
    impl RunnerTransport for OneShot {
        fn call(&self, _: &str, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>> {
            Box::pin(async { Ok(b"1".to_vec()) })
        }
    }
    let runner = Runner::new("old", Runnable::new);
    assert!(runner.connect(std::sync::Arc::new(OneShot)));
    let items: Vec<_> = runner
        .method::<u32, u32>("m")
        .call_stream(1)
        .collect()
        .await;
    assert!(
        matches!(&items[..], [Err(RunnerError::Call(CallError::Failed(m)))] if m.contains("cannot stream")),
        "{items:?}"
    );
}

#[tokio::test]
async fn stream_api_writes_each_item_in_its_format_and_refuses_a_whole_answer() {
    let svc = Service::new("t").stream_api(
        "spell",
        Text,
        StreamFormat::EventStream,
        |word: String| async move {
            let letters: Vec<Result<String, ApiError>> =
                word.chars().map(|c| Ok(c.to_string())).collect();
            Ok(futures::stream::iter(letters))
        },
    );
    let api = &svc.apis()[0];
    assert_eq!(api.stream_format(), Some(StreamFormat::EventStream));
    assert_eq!(api.output_spec.media_type, "text/event-stream");
    let items = api
        .answer_stream(Bytes::from_static(b"ok"), None)
        .await
        .unwrap();
    let items: Vec<_> = items.map(Result::unwrap).collect().await;
    assert_eq!(
        items,
        vec![Bytes::from("data: o\n\n"), Bytes::from("data: k\n\n")]
    );
    let refused = api
        .answer(Bytes::from_static(b"ok"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 501);
    let plain = Service::new("t").api("echo", Text, Text, |s: String| async move { Ok(s) });
    assert_eq!(plain.apis()[0].stream_format(), None);
    let refused = plain.apis()[0]
        .answer_stream(Bytes::new(), None)
        .await
        .err();
    assert_eq!(refused.map(|e| e.status), Some(500));
}
