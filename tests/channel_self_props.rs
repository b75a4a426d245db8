//! Property test: no `/channel_self` body, with any of its four methods, makes the server panic or
//! write outside what one real device may change. For an app without `legacy_channel_self`
//! nothing a device sends is stored; for one with it, only the named device's own choice of a
//! self-assignable channel, never an operator's assignment. Checked on the SQLite file itself.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use proptest::prelude::*;
use tower::ServiceExt;
use updraft::api::router;
use updraft::bundles::local::LocalBundles;
use updraft::domain::device::ChannelSource;
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::keys::{Target, release_sk};
use updraft::store::embedded::EmbeddedStore;
use updraft::store::{DeviceStore, ItemWriter};

const STRICT_APP: &str = "com.example.app";
const LEGACY_APP: &str = "com.example.legacy";
const VICTIM: &str = "6a1f0b3e-1111-4222-8333-9c2d00000000";
const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";

fn text() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,24}".prop_map(serde_json::Value::from),
    ]
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => proptest::sample::select(options).prop_map(serde_json::Value::from),
        1 => text(),
    ]
}

fn body() -> impl Strategy<Value = serde_json::Value> {
    (
        pick(&[STRICT_APP, LEGACY_APP]),
        pick(&[
            VICTIM,
            "6A1F0B3E-1111-4222-8333-9C2D00000000",
            "00000000-0000-4000-8000-0000000000b2",
            "00000000-0000-4000-8000-0000000000c3",
        ]),
        pick(&["7.0.0", "7.33.9", "7.34.0", "8.51.23", "6.1.0-beta.1", ""]),
        pick(&["production", "beta", "qa", "nope", ""]),
        pick(&["production", "beta", "qa", ""]),
        pick(&["android", "ios", "electron", "windows"]),
        pick(&["1.0.0", "builtin", "1.0"]),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(app, device, plugin, channel, default, platform, version, (emu, prod))| {
                let mut obj = serde_json::Map::new();
                for (k, v) in [
                    ("app_id", app),
                    ("device_id", device),
                    ("plugin_version", plugin),
                    ("channel", channel),
                    ("defaultChannel", default),
                    ("platform", platform),
                    ("version_build", version.clone()),
                    ("version_name", version),
                    ("is_emulator", emu.into()),
                    ("is_prod", prod.into()),
                ] {
                    if !v.is_null() {
                        obj.insert(k.to_owned(), v);
                    }
                }
                serde_json::Value::Object(obj)
            },
        )
}

fn method() -> impl Strategy<Value = Method> {
    proptest::sample::select(vec![Method::POST, Method::PUT, Method::GET, Method::DELETE])
}

/// A device row as stored: (app, device, channel, channel_source).
type Row = (String, String, Option<String>, Option<String>);

fn rows(db: &std::path::Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT app_id, device_id, channel, channel_source FROM devices ORDER BY 1, 2")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

struct World {
    app: axum::Router,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for app in [STRICT_APP, LEGACY_APP] {
        for (channel, self_assign) in [("production", false), ("beta", true), ("qa", false)] {
            let item: Item = [
                ("version", AttrValue::S("1.0.1".into())),
                ("url", AttrValue::S("https://cdn.example.com/b.zip".into())),
                ("checksum", AttrValue::S(SUM.into())),
                ("allow_self_assign", AttrValue::Bool(self_assign)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            store
                .put_item(app, &release_sk(channel, Target::All), &item)
                .await
                .unwrap();
        }
        store
            .set_channel(app, VICTIM, "qa", ChannelSource::Operator)
            .await
            .unwrap();
    }
    let legacy: Item = [("legacy_channel_self".to_owned(), AttrValue::Bool(true))].into();
    store.put_item(LEGACY_APP, "app", &legacy).await.unwrap();
    let bundles = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
    let state = updraft::runtime::backend::embedded_state(store, bundles, Duration::ZERO);
    World {
        app: router(Arc::new(state)),
        db: dir.path().join("updraft.db"),
        _dir: dir,
    }
}

fn request(method: &Method, body: &serde_json::Value) -> Request<Body> {
    let builder = Request::builder().method(method.clone());
    if *method == Method::GET {
        let pairs: Vec<(String, String)> = body
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect();
        let query = serde_urlencoded::to_string(pairs).unwrap();
        builder
            .uri(format!("/channel_self?{query}"))
            .body(Body::empty())
            .unwrap()
    } else {
        builder
            .uri("/channel_self")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn channel_self_writes_only_what_one_device_may(
        calls in proptest::collection::vec((method(), body()), 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = world().await;
            let before = rows(&w.db);
            for (method, body) in &calls {
                let res = w.app.clone().oneshot(request(method, body)).await.unwrap();
                let status = res.status().as_u16();
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
                let answer: serde_json::Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| panic!("{method} {body}: not JSON"));
                prop_assert!(status == 200 || status == 400, "{method} {body}: {status} {answer}");
                prop_assert!(answer.get("kind").is_none(), "{answer}");
                if status == 400 {
                    prop_assert!(answer["error"].is_string() && answer["message"].is_string());
                }
            }
            let after = rows(&w.db);
            // The operator's assignments and the strict app's devices: exactly as before.
            let fixed = |r: &&Row| r.0 == STRICT_APP || r.3.as_deref() == Some("operator");
            prop_assert_eq!(
                before.iter().filter(fixed).collect::<Vec<_>>(),
                after.iter().filter(fixed).collect::<Vec<_>>()
            );
            // Anything else: a legacy-app device's own choice of a self-assignable channel,
            // and only for a device some call named.
            for (app, device, channel, source) in after.iter().filter(|r| !fixed(r)) {
                prop_assert_eq!(app.as_str(), LEGACY_APP);
                prop_assert!(calls.iter().any(|(_, b)| b["device_id"].as_str().map(str::to_lowercase).as_deref() == Some(device.as_str())));
                prop_assert!(channel.is_none() || channel.as_deref() == Some("beta"), "{channel:?}");
                prop_assert!(source.is_none() || source.as_deref() == Some("device"));
            }
            Ok(())
        })?;
    }
}
