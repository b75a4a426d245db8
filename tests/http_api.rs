//! The HTTP contract over a real socket: every bad input of design.md §4.1 is a JSON 400/413
//! `{error, message}`, never a panic, and the server keeps serving.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use updraft::api::router;

struct Local {
    origin: String,
    _data: tempfile::TempDir,
}

async fn start() -> Local {
    let data = tempfile::tempdir().unwrap();
    let state = updraft::runtime::backend::open_embedded_state(
        data.path(),
        Duration::ZERO,
        Duration::from_secs(60),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router(Arc::new(state))).into_future());
    Local {
        origin,
        _data: data,
    }
}

/// POSTs raw bytes to /updates and returns status and JSON body.
async fn post(origin: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
    let res = support::client()
        .post(format!("{origin}/updates"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()["content-type"],
        "application/json",
        "every answer is JSON"
    );
    (status, res.json().await.expect("a JSON body"))
}

fn with(field: &str, value: serde_json::Value) -> String {
    let mut b = plugin_body(APP_ID, "1.0.0", "builtin");
    if value.is_null() {
        b.as_object_mut().unwrap().remove(field);
    } else {
        b[field] = value;
    }
    b.to_string()
}

#[tokio::test]
async fn bad_inputs_are_json_errors_and_the_server_keeps_serving() {
    let s = start().await;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let huge = format!("{{\"device_id\":\"{}\"}}", "x".repeat(200 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "invalid JSON",
            b"{not json".to_vec(),
            400,
            "invalid_json_parse_body",
        ),
        ("empty body", Vec::new(), 400, "invalid_json_parse_body"),
        ("binary garbage", garbage, 400, "invalid_json_parse_body"),
        (
            "array body",
            b"[{\"device_id\":\"x\"}]".to_vec(),
            400,
            "invalid_json_body",
        ),
        (
            "string body",
            b"\"hello\"".to_vec(),
            400,
            "invalid_json_body",
        ),
        ("empty object", b"{}".to_vec(), 400, "missing_device_id"),
        (
            "missing device_id",
            with("device_id", serde_json::Value::Null).into_bytes(),
            400,
            "missing_device_id",
        ),
        (
            "missing app_id",
            with("app_id", serde_json::Value::Null).into_bytes(),
            400,
            "missing_app_id",
        ),
        (
            "non-semver version_build",
            with("version_build", "1.2.3.4.5".into()).into_bytes(),
            400,
            "semver_error",
        ),
        (
            "bad UUID",
            with("device_id", "not-a-uuid".into()).into_bytes(),
            400,
            "invalid_json_body",
        ),
        (
            "bad platform",
            with("platform", "windows".into()).into_bytes(),
            400,
            "invalid_json_body",
        ),
        (
            "bad app_id",
            with("app_id", "../../etc".into()).into_bytes(),
            400,
            "invalid_json_body",
        ),
        (
            "wrong type",
            with("is_emulator", "no".into()).into_bytes(),
            400,
            "invalid_json_body",
        ),
        (
            "empty version_name",
            with("version_name", "".into()).into_bytes(),
            400,
            "invalid_json_body",
        ),
        ("huge body", huge.into_bytes(), 413, "payload_too_large"),
    ];
    for (what, body, status, code) in cases {
        let (got, json) = post(&s.origin, body).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"], code, "{what}: {json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: a message");
        assert!(
            !message.contains("panicked") && !message.contains("src/"),
            "{what}: no internals: {message}"
        );
    }

    // A huge body sent without Content-Length (chunked) is cut at the limit too.
    let chunks = futures_chunks(300);
    let (got, json) = post(&s.origin, reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(
        (got, json["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    // Still serving.
    let health: serde_json::Value = support::client()
        .get(format!("{}/health", s.origin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let (got, json) = post(
        &s.origin,
        plugin_body(APP_ID, "1.0.0", "builtin").to_string(),
    )
    .await;
    assert_eq!(got, 200);
    assert_eq!(json["error"], "app_not_found");
    assert_eq!(json["kind"], "failed");
}

/// A stream of `n` 1 KiB chunks, so reqwest sends no Content-Length.
fn futures_chunks(
    n: usize,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Chunks(usize);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            std::task::Poll::Ready(Some(Ok(vec![b' '; 1024])))
        }
    }
    Chunks(n)
}

#[tokio::test]
async fn routes_cors_and_unknown_paths() {
    let s = start().await;
    let res = support::client()
        .get(format!("{}/nope", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/json");
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "not_found");

    let res = support::client()
        .get(format!("{}/updates", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "method_not_allowed"
    );

    // A browser (Capacitor's web view on some setups, or the web build) preflights.
    let res = support::client()
        .request(reqwest::Method::OPTIONS, format!("{}/updates", s.origin))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let methods = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");

    // Bundle paths that are not signed, or try to escape, are refused without touching disk.
    let res = support::client()
        .get(format!("{}/bundles/..%2F..%2Fetc%2Fpasswd", s.origin))
        .send()
        .await
        .unwrap();
    assert!(
        res.status() == 403 || res.status() == 404,
        "{}",
        res.status()
    );
}
