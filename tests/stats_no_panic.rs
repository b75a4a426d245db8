//! Property test over `POST /stats` bodies, through the real router on the embedded store:
//! no body panics or answers outside 200/400 JSON, and no body writes outside what one
//! request may write (one app's known releases, allow-listed counters, one device, a few
//! evidence marks, a bounded failed-versions set, no new items).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower::ServiceExt;
use updraft::api::router;
use updraft::api::source::SourceIp;
use updraft::bundles::local::LocalBundles;
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::stats::actions::{COUNTED_ACTIONS, OTHER_ACTION};
use updraft::domain::stats::fold::{
    MAX_COUNTERS_PER_BATCH, MAX_FAILED_VERSIONS, MAX_MARKS_PER_BATCH,
};
use updraft::store::ItemWriter;
use updraft::store::embedded::EmbeddedStore;

const APP: &str = "com.example.app";
const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";
/// (sort key, version) of the app's release items.
const RELEASES: &[(&str, &str)] = &[
    ("release#production#all", "1.0.1"),
    ("release#production#android", "1.0.2"),
    ("release#beta#all", "2.0.0"),
];

fn text(choices: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => proptest::sample::select(choices).prop_map(serde_json::Value::from),
        1 => "\\PC{0,12}".prop_map(serde_json::Value::from),
        1 => Just(serde_json::Value::Null),
        1 => any::<i64>().prop_map(serde_json::Value::from),
    ]
}

fn device() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => proptest::sample::select(&[
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002",
            "6A1F0B3E-1111-4222-8333-9C2D00000000",
        ][..]).prop_map(serde_json::Value::from),
        2 => any::<u128>().prop_map(|n| {
            let h = format!("{n:032x}");
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]).into()
        }),
        1 => Just("not-a-uuid".into()),
    ]
}

fn metadata() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,40}", 0..20)
            .prop_map(|m| serde_json::json!(m)),
        (1usize..6000).prop_map(|n| serde_json::json!({ "stack": "é".repeat(n) })),
        Just(serde_json::json!({ "k": 1 })),
    ]
}

fn event() -> impl Strategy<Value = serde_json::Value> {
    (
        text(&[APP, APP, APP, "com.madeup.app", "com.other.app"]),
        device(),
        text(&["android", "ios", "electron", "web"]),
        text(&[
            "set",
            "update_fail",
            "checksum_fail",
            "download_fail",
            "app_moved_to_foreground",
            "brand_new_action",
            "x y\u{1b}[31m",
            "download_manifest_checksum_fail",
        ]),
        text(&[
            "1.0.1",
            "1.0.2",
            "2.0.0",
            "builtin",
            "9.9.9",
            "1.0.2:assets/app.js",
            "",
        ]),
        text(&["", "production", "beta", "made-up"]),
        metadata(),
    )
        .prop_map(
            |(app, device, platform, action, version, channel, metadata)| {
                let mut e = serde_json::json!({
                    "app_id": app, "device_id": device, "platform": platform, "action": action,
                    "version_name": version, "defaultChannel": channel, "metadata": metadata,
                    "version_build": "1.0.0", "version_os": "14", "plugin_version": "8.51.23",
                    "old_version_name": "", "is_prod": true, "is_emulator": false,
                    "timestamp": 1_795_910_400_000u64,
                });
                e.as_object_mut().unwrap().retain(|_, v| !v.is_null());
                e
            },
        )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(event(), 0..260)
            .prop_map(|events| serde_json::to_vec(&events).unwrap()),
        2 => event().prop_map(|e| serde_json::to_vec(&e).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// Rows of a table.
fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = db.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Text(s) => s,
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn stats_bodies_stay_within_bounds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    rt.block_on(async {
        for (i, (sk, version)) in RELEASES.iter().enumerate() {
            let mut item = Item::new();
            item.insert("version".into(), AttrValue::S((*version).into()));
            item.insert("url".into(), AttrValue::S("https://x.test/b.zip".into()));
            item.insert("checksum".into(), AttrValue::S(SUM.into()));
            // One release pauses on little evidence, so that pauses happen too.
            if i == 0 {
                item.insert("auto_pause_min_networks".into(), AttrValue::N(1.into()));
                item.insert("auto_pause_min_attempts".into(), AttrValue::N(1.into()));
            }
            store.put_item(APP, sk, &item).await.unwrap();
        }
    });
    let bundles = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
    let app = router(Arc::new(updraft::runtime::backend::embedded_state(
        store,
        bundles,
        Duration::ZERO,
    )));
    let db = rusqlite::Connection::open(dir.path().join("updraft.db")).unwrap();
    let count = |table: &str| {
        rows(&db, &format!("SELECT count(*) FROM {table}"))[0][0]
            .parse::<usize>()
            .unwrap()
    };
    let count_where = |table: &str, cond: &str| {
        rows(&db, &format!("SELECT count(*) FROM {table} WHERE {cond}"))[0][0]
            .parse::<usize>()
            .unwrap()
    };
    let known: Vec<(&str, &str)> = ["production", "beta"]
        .iter()
        .flat_map(|c| ["1.0.1", "1.0.2", "2.0.0", "builtin"].map(|v| (*c, v)))
        .collect();

    let mut runner = TestRunner::new(Config::with_cases(96));
    runner
        .run(&(body(), 0u8..4), |(body, source)| {
            let paused = || {
                rows(
                    &db,
                    &format!(
                        "SELECT count(*) FROM items WHERE app_id = '{APP}' AND attrs LIKE '%\"paused\":true%'"
                    ),
                )[0][0]
                    .parse::<usize>()
                    .unwrap()
            };
            let history = || count_where("items", &format!("app_id = '{APP}#history'"));
            let (paused_before, history_before) = (paused(), history());
            let (items, counters, devices, marks) = (
                count("items"),
                count("counters"),
                count("devices"),
                count("evidence_marks"),
            );
            let mut req = axum::http::Request::post("/stats")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            let ip: IpAddr = format!("10.0.{source}.1").parse().unwrap();
            req.extensions_mut().insert(SourceIp(ip));
            let res = rt.block_on(app.clone().oneshot(req)).unwrap();
            let status = res.status().as_u16();
            let bytes = rt
                .block_on(axum::body::to_bytes(res.into_body(), 1 << 20))
                .unwrap();
            let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
            prop_assert!(status == 200 || status == 400, "{status}: {answer}");
            prop_assert!(answer.get("status").is_some() || answer.get("error").is_some());

            // The only item a request may add is the history entry of an automatic pause,
            // one for each release it paused.
            let (newly_paused, new_history) = (paused() - paused_before, history() - history_before);
            prop_assert_eq!(new_history, newly_paused, "one history entry per automatic pause");
            prop_assert_eq!(count("items"), items + new_history, "no other item is created");
            prop_assert!(count("devices") <= devices + 1, "one device per request");
            prop_assert!(count("evidence_marks") <= marks + 2 * MAX_MARKS_PER_BATCH);
            prop_assert!(
                count("counters")
                    <= counters + MAX_COUNTERS_PER_BATCH * (COUNTED_ACTIONS.len() + 1)
            );
            for row in rows(&db, "SELECT app_id, channel, version, action FROM counters") {
                prop_assert_eq!(&row[0], APP, "only the known app");
                prop_assert!(
                    known.contains(&(row[1].as_str(), row[2].as_str())),
                    "{:?}",
                    row
                );
                prop_assert!(
                    row[3] == OTHER_ACTION || COUNTED_ACTIONS.contains(&row[3].as_str()),
                    "{:?}",
                    row
                );
            }
            for row in rows(&db, "SELECT app_id, failed_versions FROM devices") {
                prop_assert_eq!(&row[0], APP);
                let failed: Vec<String> = serde_json::from_str(&row[1]).unwrap();
                prop_assert!(failed.len() <= MAX_FAILED_VERSIONS);
                prop_assert!(
                    failed.iter().all(|v| RELEASES.iter().any(|(_, r)| r == v)),
                    "{:?}",
                    failed
                );
            }
            for row in rows(
                &db,
                "SELECT app_id FROM evidence_marks UNION SELECT app_id FROM evidence",
            ) {
                prop_assert_eq!(&row[0], APP);
            }
            Ok(())
        })
        .unwrap();
}
