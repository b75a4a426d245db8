//! The device side over HTTP (protocol.md §5–6), the same scenarios on both backends: the
//! embedded store, and DynamoDB on moto (`UPDRAFT_TEST_MOTO`). Stats batches and objects,
//! refusal of bad events, a store outage (503, then the resent batch counted once), failed
//! versions never re-offered, auto-pause and resume, `/channel_self` for plugins 8.x and 7.0,
//! and operator overrides.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::aws::{CallLog, config_for, emulator, unique};
use support::{APP_ID, DEVICE_ID, plugin_body, serve};
use updraft::bundles::local::LocalBundles;
use updraft::bundles::s3::S3Bundles;
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::keys::{Target, release_sk};
use updraft::ops::OperatorStores;
use updraft::runtime::aws::{AwsTimeouts, dynamo_client, s3_client};
use updraft::runtime::backend::AwsTables;
use updraft::store::dynamo::devices::DynamoDevices;
use updraft::store::dynamo::releases::DynamoStore;
use updraft::store::dynamo::stats::DynamoStats;
use updraft::store::dynamo::tables::create_devices_table;
use updraft::store::dynamo::tables::create_table;
use updraft::store::embedded::EmbeddedStore;

const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";
const OTHER_DEVICE: &str = "00000000-0000-4000-8000-0000000000b2";
const THIRD_DEVICE: &str = "00000000-0000-4000-8000-0000000000c3";

/// A server on a real socket plus the operator's view of the same stores.
struct Harness {
    origin: String,
    ops: OperatorStores,
    /// Makes the stats store fail until `heal` runs.
    outage: Outage,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

enum Outage {
    /// Another connection holds SQLite's write lock.
    Embedded(std::path::PathBuf),
    /// The devices table is deleted, then created again.
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        devices: String,
    },
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    // A short lock wait, so that the outage test answers quickly.
    let store = EmbeddedStore::open_with(dir.path(), Duration::from_millis(300), 3600).unwrap();
    let bundles = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
    let origin = serve(updraft::runtime::backend::embedded_state(
        store.clone(),
        bundles,
        Duration::ZERO,
    ))
    .await;
    let shared = Arc::new(store);
    let ops = OperatorStores {
        releases: shared.clone(),
        items: shared.clone(),
        query: shared.clone(),
        history: shared.clone(),
        devices: shared.clone(),
        stats: shared.clone(),
        evidence: shared,
        bundles: None,
        identity: Arc::new(updraft::runtime::identity::LocalUser),
        clock: updraft::clock::system(),
    };
    Harness {
        origin,
        ops,
        outage: Outage::Embedded(dir.path().join("updraft.db")),
        _keep: vec![Box::new(dir)],
    }
}

/// DynamoDB on moto.
async fn dynamo() -> Harness {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let client = dynamo_client(&conf);
    let (table, devices) = (unique("releases"), unique("devices"));
    create_table(&client, &table).await.unwrap();
    create_devices_table(&client, &devices).await.unwrap();
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    let device_store = Arc::new(DynamoDevices::new(
        client.clone(),
        table.clone(),
        devices.clone(),
        3600,
    ));
    let stats = Arc::new(DynamoStats::new(
        client.clone(),
        table.clone(),
        devices.clone(),
        3600,
    ));
    // The server's own stores, on the same tables as the operator's below.
    let state = updraft::runtime::backend::aws_state(
        &client,
        &client,
        S3Bundles::new(s3_client(&conf), "bundles", Duration::from_secs(60)),
        AwsTables {
            releases: &table,
            devices: &devices,
            device_ttl: 3600,
        },
        Duration::ZERO,
    );
    let origin = serve(state).await;
    let ops = OperatorStores {
        releases: store.clone(),
        items: store.clone(),
        query: store.clone(),
        history: store.clone(),
        devices: device_store,
        stats: stats.clone(),
        evidence: stats,
        bundles: None,
        identity: Arc::new(updraft::runtime::identity::LocalUser),
        clock: updraft::clock::system(),
    };
    Harness {
        origin,
        ops,
        outage: Outage::Dynamo { client, devices },
        _keep: vec![],
    }
}

impl Harness {
    async fn release(&self, channel: &str, version: &str, extra: &[(&str, AttrValue)]) {
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S(version.into()));
        item.insert(
            "url".into(),
            AttrValue::S(format!("https://cdn.example.com/{version}.zip")),
        );
        item.insert("checksum".into(), AttrValue::S(SUM.into()));
        for (k, v) in extra {
            item.insert((*k).into(), v.clone());
        }
        self.ops
            .items
            .put_item(APP_ID, &release_sk(channel, Target::All), &item)
            .await
            .unwrap();
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.send_from(None, method, path, body).await
    }

    /// A request from the source address `from` (the client socket is bound to it).
    async fn send_from(
        &self,
        from: Option<std::net::IpAddr>,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .local_address(from)
            .build()
            .unwrap();
        let mut req = client.request(method, format!("{}{path}", self.origin));
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(!text.is_empty(), "answers are never empty ({path})");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")),
        )
    }

    async fn check(&self, device: &str, default_channel: &str) -> serde_json::Value {
        let mut body = plugin_body(APP_ID, "1.0.0", "builtin");
        body["device_id"] = device.into();
        body["defaultChannel"] = default_channel.into();
        let (status, answer) = self.post("/updates", &body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn counts(&self, channel: &str, version: &str) -> (u64, u64) {
        let key = updraft::domain::stats::fold::CounterKey {
            app_id: APP_ID.into(),
            channel: channel.into(),
            version: version.into(),
        };
        let c = self.ops.stats.counts(&key).await.unwrap();
        (
            updraft::domain::stats::fold::installs(&c),
            updraft::domain::stats::fold::failures(&c),
        )
    }
}

fn event(device: &str, action: &str, version: &str) -> serde_json::Value {
    let mut e = plugin_body(APP_ID, "1.0.0", version);
    e["device_id"] = device.into();
    e["action"] = action.into();
    e["old_version_name"] = "".into();
    e["timestamp"] = 1_795_910_400_000u64.into();
    e["metadata"] = serde_json::json!({"source": "test"});
    e
}

async fn stats_scenario(h: Harness) {
    h.release("production", "1.0.1", &[]).await;

    // An object (Android's download worker) and an array (the normal batched path).
    let (status, ok) = h.post("/stats", &event(DEVICE_ID, "set", "1.0.1")).await;
    assert_eq!((status, ok["status"].as_str()), (200, Some("ok")));
    let batch = serde_json::json!([
        event(DEVICE_ID, "set", "1.0.1"),
        event(OTHER_DEVICE, "some_future_action", "1.0.1")
    ]);
    let (status, ok) = h.post("/stats", &batch).await;
    assert_eq!((status, ok["accepted"].as_u64()), (200, Some(2)));
    assert_eq!(h.counts("production", "1.0.1").await, (2, 0));

    // One bad event refuses the batch, and nothing of it is stored.
    let mut bad = event(DEVICE_ID, "set", "1.0.1");
    bad["device_id"] = "not-a-uuid".into();
    let (status, err) = h
        .post(
            "/stats",
            &serde_json::json!([event(DEVICE_ID, "set", "1.0.1"), bad]),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "invalid_json_body");
    assert!(err["message"].as_str().unwrap().contains("event 1"));
    assert_eq!(
        h.counts("production", "1.0.1").await,
        (2, 0),
        "nothing of a refused batch is stored"
    );

    // The store is down: 503, so the plugin keeps the batch; once it is back the resent batch
    // is counted exactly once.
    // (A failure in it makes the batch write the devices table too.)
    let batch = serde_json::json!([
        event(DEVICE_ID, "set", "1.0.1"),
        event(DEVICE_ID, "checksum_fail", "1.0.1")
    ]);
    let healed = match &h.outage {
        Outage::Embedded(db) => {
            let lock = rusqlite::Connection::open(db).unwrap();
            lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
            let (status, err) = h.post("/stats", &batch).await;
            assert_eq!(
                (status, err["error"].as_str()),
                (503, Some("service_unavailable"))
            );
            lock.execute_batch("ROLLBACK").unwrap();
            true
        }
        Outage::Dynamo { client, devices } => {
            client
                .delete_table()
                .table_name(devices)
                .send()
                .await
                .unwrap();
            let (status, err) = h.post("/stats", &batch).await;
            assert_eq!(
                (status, err["error"].as_str()),
                (503, Some("service_unavailable"))
            );
            create_devices_table(client, devices).await.unwrap();
            true
        }
    };
    assert!(healed);
    assert_eq!(
        h.counts("production", "1.0.1").await,
        (2, 0),
        "a failed batch left nothing behind"
    );
    let (status, _) = h.post("/stats", &batch).await;
    assert_eq!(status, 200);
    assert_eq!(h.counts("production", "1.0.1").await, (3, 1));
    let (status, _) = h.post("/stats", &batch).await;
    assert_eq!(status, 200, "a resend of an applied batch is accepted");
}

async fn failed_versions_and_auto_pause(h: Harness) {
    h.release(
        "production",
        "1.0.1",
        &[("auto_pause_min_attempts", AttrValue::N(10.into()))],
    )
    .await;
    assert_eq!(h.check(DEVICE_ID, "").await["version"], "1.0.1");

    // The device rolled 1.0.1 back: it is never offered 1.0.1 again ...
    let (status, _) = h
        .post(
            "/stats",
            &serde_json::json!([event(DEVICE_ID, "update_fail", "1.0.1")]),
        )
        .await;
    assert_eq!(status, 200);
    let answer = h.check(DEVICE_ID, "").await;
    assert_eq!(
        (answer["error"].as_str(), answer["kind"].as_str()),
        (Some("version_failed_on_device"), Some("blocked"))
    );
    // ... while other devices still get it, and a transient download_fail blocks nothing.
    h.post(
        "/stats",
        &serde_json::json!([event(OTHER_DEVICE, "download_fail", "builtin")]),
    )
    .await;
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.0.1");
    // ... until a newer release exists.
    h.release(
        "production",
        "1.0.2",
        &[
            ("auto_pause_min_attempts", AttrValue::N(10.into())),
            ("auto_pause_min_networks", AttrValue::N(2.into())),
        ],
    )
    .await;
    assert_eq!(h.check(DEVICE_ID, "").await["version"], "1.0.2");

    // 1.0.2 fails on most devices: once the evidence is strong enough it is paused. (This
    // release asks for failures from 2 networks: 127.0.0.0/24 and 127.0.1.0/24.) Each device
    // sends its own batch; its `set` and `update_fail` count once each, however often sent.
    for i in 0..12u8 {
        let device = format!("00000000-0000-4000-8000-{i:012}");
        let from: std::net::IpAddr = if i % 2 == 0 { "127.0.0.1" } else { "127.0.1.1" }
            .parse()
            .unwrap();
        let mut events = vec![event(&device, "set", "1.0.2")];
        if i >= 2 {
            events.push(event(&device, "update_fail", "1.0.2"));
            events.push(event(&device, "update_fail", "1.0.2"));
        }
        let (status, _) = h
            .send_from(
                Some(from),
                reqwest::Method::POST,
                "/stats",
                Some(&serde_json::Value::Array(events)),
            )
            .await;
        assert_eq!(status, 200);
    }
    let answer = h.check(THIRD_DEVICE, "").await;
    assert_eq!(answer["error"], "release_paused", "{answer}");
    assert_eq!(answer["kind"], "blocked");
    assert!(
        answer["message"].as_str().unwrap().contains("auto-paused"),
        "{answer}"
    );

    // `updraft resume` lifts it; only later failures count towards the next pause.
    updraft::ops::pauses::resume(&h.ops, APP_ID, "production", Target::All)
        .await
        .unwrap();
    assert_eq!(h.check(THIRD_DEVICE, "").await["version"], "1.0.2");
    let item = h
        .ops
        .items
        .get_item(APP_ID, "release#production#all")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.get("paused"), Some(&AttrValue::Bool(false)));
    assert_eq!(
        item.get("pause_baseline_failures"),
        Some(&AttrValue::N(20.into()))
    );
    // The automatic pause and the resume are in history, each written with its change.
    let history = updraft::ops::history::history_entries(&h.ops, APP_ID, None, None)
        .await
        .unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = history
        .iter()
        .map(|e| (e.action.as_str(), e.who.as_str(), e.to_version.as_deref()))
        .collect();
    let who = h.ops.identity.who().await.unwrap();
    assert_eq!(
        got,
        [
            ("resume", who.as_str(), Some("1.0.2")),
            (
                "auto-pause",
                updraft::domain::history::AUTOMATIC,
                Some("1.0.2")
            ),
        ],
        "{history:?}"
    );
    assert!(
        history[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("auto-paused")
    );
}

/// A device id nobody has.
fn random_device() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Forged stats from one source address, naming 200 made-up devices, in both forms the plugin
/// uses: the release keeps serving (with the default policy) and no victim is marked failed.
async fn forged_stats_leave_the_release_serving(h: Harness) {
    h.release("production", "1.0.1", &[]).await;
    let victims: Vec<String> = (0..200).map(|_| random_device()).collect();
    let events: Vec<_> = victims
        .iter()
        .flat_map(|d| [event(d, "set", "1.0.1"), event(d, "update_fail", "1.0.1")])
        .collect();
    let (status, answer) = h.post("/stats", &serde_json::Value::Array(events)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["skipped"], 200, "a batch is at most 200 events");
    for _ in 0..200 {
        let (status, _) = h
            .post("/stats", &event(&random_device(), "update_fail", "1.0.1"))
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        h.check(THIRD_DEVICE, "").await["version"],
        "1.0.1",
        "one network never pauses a release"
    );
    let item = h
        .ops
        .items
        .get_item(APP_ID, "release#production#all")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(item.get("paused"), Some(&AttrValue::Bool(true)));
    assert_eq!(
        h.check(&victims[1], "").await["version"],
        "1.0.1",
        "a batch marks only its own device as failed"
    );
}

async fn channels_and_overrides(h: Harness) {
    h.release("production", "1.0.1", &[]).await;
    h.release(
        "beta",
        "1.1.0",
        &[("allow_self_assign", AttrValue::Bool(true))],
    )
    .await;
    h.release("qa", "1.2.0", &[]).await;

    let info = |plugin: &str, device: &str| {
        let mut b = plugin_body(APP_ID, "1.0.0", "builtin");
        b["plugin_version"] = plugin.into();
        b["device_id"] = device.into();
        b
    };
    let with_channel = |mut b: serde_json::Value, c: &str| {
        b["channel"] = c.into();
        b
    };

    for (plugin, device) in [("8.51.23", DEVICE_ID), ("7.0.0", OTHER_DEVICE)] {
        // setChannel: refusals have error + message and never kind.
        let (status, a) = h
            .post("/channel_self", &with_channel(info(plugin, device), "qa"))
            .await;
        assert_eq!(
            (status, a["error"].as_str()),
            (200, Some("channel_self_set_not_allowed")),
            "{plugin}: {a}"
        );
        assert!(a.get("kind").is_none());
        let (_, a) = h
            .post("/channel_self", &with_channel(info(plugin, device), "nope"))
            .await;
        assert_eq!(a["error"], "channel_not_found", "{plugin}");
        let (status, a) = h.post("/channel_self", &info(plugin, device)).await;
        assert_eq!(
            (status, a["error"].as_str()),
            (400, Some("invalid_json_body")),
            "{plugin}: channel missing"
        );
        let (status, a) = h
            .post("/channel_self", &with_channel(info(plugin, device), "beta"))
            .await;
        if plugin == "7.0.0" {
            // An old plugin wants the server to remember: refused unless the app opts in.
            assert_eq!(
                (status, a["error"].as_str()),
                (200, Some("channel_self_set_not_stored")),
                "{plugin}: {a}"
            );
        } else {
            assert_eq!(
                (status, a["status"].as_str()),
                (200, Some("ok")),
                "{plugin}: {a}"
            );
            assert!(a.get("kind").is_none() && a.get("error").is_none());
            assert!(a.get("unset").is_none());
        }
        // setChannel to the default: the plugin must clear its local channel, not pin it.
        let (status, a) = h
            .post(
                "/channel_self",
                &with_channel(info(plugin, device), "production"),
            )
            .await;
        assert_eq!(
            (status, a["status"].as_str(), a["unset"].as_bool()),
            (200, Some("ok"), Some(true)),
            "{plugin}: {a}"
        );
        assert!(a.get("kind").is_none() && a.get("error").is_none());

        // listChannels: a bare array with integer ids, only what this device may choose.
        let mut query = Vec::new();
        for (k, v) in info(plugin, device).as_object().unwrap() {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            query.push(format!("{k}={}", v.replace('+', "%2B")));
        }
        let (status, list) = h
            .send(
                reqwest::Method::GET,
                &format!("/channel_self?{}", query.join("&")),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let list = list.as_array().expect("a bare JSON array");
        let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["beta", "production"], "{plugin}");
        assert!(list.iter().all(|c| c["id"].is_u64()));
        assert_eq!(list[1]["public"], true);
        assert_eq!(list[0]["allow_self_set"], true);
    }

    // Plugin 8.x keeps the choice on the device and sends it as defaultChannel; getChannel echoes it.
    let mut b = info("8.51.23", DEVICE_ID);
    b["defaultChannel"] = "beta".into();
    let (_, a) = h
        .send(reqwest::Method::PUT, "/channel_self", Some(&b))
        .await;
    assert_eq!(
        (a["channel"].as_str(), a["status"].as_str()),
        (Some("beta"), Some("override")),
        "{a}"
    );
    assert!(a.get("kind").is_none());
    assert_eq!(h.check(DEVICE_ID, "beta").await["version"], "1.1.0");
    // A device on the default is not pinned to its name (trap 11).
    let (_, a) = h
        .send(
            reqwest::Method::PUT,
            "/channel_self",
            Some(&info("8.51.23", DEVICE_ID)),
        )
        .await;
    assert_eq!(
        (a["channel"].as_str(), a["status"].as_str()),
        (Some(""), Some("default")),
        "{a}"
    );

    // A hijack: a stranger names a victim's device id, as an old plugin and as a new one,
    // with every method. The victim has an operator's assignment; nothing of it moves.
    updraft::ops::devices::set_channel(&h.ops, APP_ID, THIRD_DEVICE, "qa")
        .await
        .unwrap();
    let victim_before = h
        .ops
        .devices
        .get_device(APP_ID, THIRD_DEVICE)
        .await
        .unwrap();
    assert!(victim_before.is_some());
    let stranger = "00000000-0000-4000-8000-0000000000d4";
    for plugin in ["7.0.0", "7.33.9", "8.51.23", ""] {
        for (target, channel) in [
            (THIRD_DEVICE, "beta"),
            (THIRD_DEVICE, "production"),
            (stranger, "beta"),
        ] {
            let body = with_channel(info(plugin, target), channel);
            h.post("/channel_self", &body).await;
            h.send(reqwest::Method::PUT, "/channel_self", Some(&body))
                .await;
            h.send(reqwest::Method::DELETE, "/channel_self", Some(&body))
                .await;
        }
    }
    assert_eq!(
        h.ops
            .devices
            .get_device(APP_ID, THIRD_DEVICE)
            .await
            .unwrap(),
        victim_before
    );
    assert_eq!(
        h.ops.devices.get_device(APP_ID, stranger).await.unwrap(),
        None
    );
    assert_eq!(h.check(THIRD_DEVICE, "").await["version"], "1.2.0");
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.0.1");

    // An app that still has plugins older than 7.34 opts in to server-side choices.
    let mut app = Item::new();
    app.insert("legacy_channel_self".into(), AttrValue::Bool(true));
    h.ops.items.put_item(APP_ID, "app", &app).await.unwrap();
    let (_, a) = h
        .post(
            "/channel_self",
            &with_channel(info("7.0.0", OTHER_DEVICE), "beta"),
        )
        .await;
    assert_eq!(a["status"], "ok", "{a}");
    // Even then, a device's own choice never replaces an operator's assignment.
    for channel in ["beta", "production"] {
        h.post(
            "/channel_self",
            &with_channel(info("7.0.0", THIRD_DEVICE), channel),
        )
        .await;
    }
    h.send(
        reqwest::Method::DELETE,
        "/channel_self",
        Some(&info("7.0.0", THIRD_DEVICE)),
    )
    .await;
    assert_eq!(
        h.ops
            .devices
            .get_device(APP_ID, THIRD_DEVICE)
            .await
            .unwrap(),
        victim_before
    );

    // Plugin 7.0 sends no defaultChannel: the server remembered its choice.
    let (_, a) = h
        .send(
            reqwest::Method::PUT,
            "/channel_self",
            Some(&info("7.0.0", OTHER_DEVICE)),
        )
        .await;
    assert_eq!(
        (a["channel"].as_str(), a["status"].as_str()),
        (Some("beta"), Some("override")),
        "{a}"
    );
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.1.0");
    let (status, a) = h
        .send(
            reqwest::Method::DELETE,
            "/channel_self",
            Some(&info("7.0.0", OTHER_DEVICE)),
        )
        .await;
    assert_eq!((status, a["status"].as_str()), (200, Some("ok")));
    assert_eq!(
        h.check(OTHER_DEVICE, "").await["version"],
        "1.0.1",
        "unset: back on the default"
    );
    // setChannel to the default forgets the stored choice too.
    h.post(
        "/channel_self",
        &with_channel(info("7.0.0", OTHER_DEVICE), "beta"),
    )
    .await;
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.1.0");
    let (_, a) = h
        .post(
            "/channel_self",
            &with_channel(info("7.0.0", OTHER_DEVICE), "production"),
        )
        .await;
    assert_eq!(a["unset"], true, "{a}");
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.0.1");
    // Turning the option off again: stored device choices no longer count.
    h.post(
        "/channel_self",
        &with_channel(info("7.0.0", OTHER_DEVICE), "beta"),
    )
    .await;
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.1.0");
    h.ops
        .items
        .put_item(APP_ID, "app", &Item::new())
        .await
        .unwrap();
    assert_eq!(h.check(OTHER_DEVICE, "").await["version"], "1.0.1");

    // An operator override wins over defaultChannel, and needs no self-assignment.
    updraft::ops::devices::set_channel(&h.ops, APP_ID, DEVICE_ID, "qa")
        .await
        .unwrap();
    assert_eq!(h.check(DEVICE_ID, "beta").await["version"], "1.2.0");
    let (_, a) = h
        .send(
            reqwest::Method::PUT,
            "/channel_self",
            Some(&info("8.51.23", DEVICE_ID)),
        )
        .await;
    assert_eq!(a["channel"], "qa");
    // An old plugin's unsetChannel does not undo the operator's assignment.
    h.send(
        reqwest::Method::DELETE,
        "/channel_self",
        Some(&info("7.0.0", DEVICE_ID)),
    )
    .await;
    assert_eq!(h.check(DEVICE_ID, "beta").await["version"], "1.2.0");
    updraft::ops::devices::unset_channel(&h.ops, APP_ID, DEVICE_ID)
        .await
        .unwrap();
    assert_eq!(h.check(DEVICE_ID, "beta").await["version"], "1.1.0");
}

#[tokio::test]
async fn stats_embedded() {
    stats_scenario(embedded().await).await;
}

#[tokio::test]
async fn stats_dynamo() {
    stats_scenario(dynamo().await).await;
}

#[tokio::test]
async fn failed_versions_and_auto_pause_embedded() {
    failed_versions_and_auto_pause(embedded().await).await;
}

#[tokio::test]
async fn failed_versions_and_auto_pause_dynamo() {
    failed_versions_and_auto_pause(dynamo().await).await;
}

#[tokio::test]
async fn forged_stats_leave_the_release_serving_embedded() {
    forged_stats_leave_the_release_serving(embedded().await).await;
}

#[tokio::test]
async fn forged_stats_leave_the_release_serving_dynamo() {
    forged_stats_leave_the_release_serving(dynamo().await).await;
}

#[tokio::test]
async fn channels_and_overrides_embedded() {
    channels_and_overrides(embedded().await).await;
}

#[tokio::test]
async fn channels_and_overrides_dynamo() {
    channels_and_overrides(dynamo().await).await;
}

/// DynamoDB's size of an item (attribute names plus values; numbers as their digits), bytes.
fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    V::S(s) => s.len(),
                    V::N(n) => n.len().div_ceil(2) + 1,
                    V::Ss(ss) => ss.iter().map(String::len).sum(),
                    V::Bool(_) => 1,
                    _ => 8,
                }
        })
        .sum()
}

/// The most one `/stats` request can cost on DynamoDB (README, "What it costs"): 200 events (the batch cap) about 18
/// releases of the app on 18 channels, every counted action, failures of many versions by the
/// batch's device, unknown apps and versions. Counted with an interceptor on the server's
/// client; write units from the sizes of the items written.
#[tokio::test]
async fn worst_case_stats_request_cost_dynamo() {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let plain = dynamo_client(&conf);
    let log = CallLog::default();
    let counted = log.client(&conf);
    let (table, devices) = (unique("releases"), unique("devices"));
    create_table(&plain, &table).await.unwrap();
    create_devices_table(&plain, &devices).await.unwrap();
    let writer = DynamoStore::new(plain.clone(), table.clone());
    use updraft::store::ItemWriter;
    let channels: Vec<String> = (0..18).map(|i| format!("c{i}")).collect();
    for (i, c) in channels.iter().enumerate() {
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S(format!("1.0.{i}")));
        item.insert(
            "url".into(),
            AttrValue::S("https://cdn.example.com/b.zip".into()),
        );
        item.insert("checksum".into(), AttrValue::S(SUM.into()));
        writer
            .put_item(APP_ID, &release_sk(c, Target::All), &item)
            .await
            .unwrap();
    }
    let state = updraft::runtime::backend::aws_state(
        &counted,
        &counted,
        S3Bundles::new(s3_client(&conf), "bundles", Duration::from_secs(60)),
        AwsTables {
            releases: &table,
            devices: &devices,
            device_ttl: 3600,
        },
        Duration::ZERO,
    );
    let origin = serve(state).await;

    let actions: Vec<&str> = updraft::domain::stats::actions::COUNTED_ACTIONS
        .iter()
        .copied()
        .chain(["made_up_1", "made_up_2"])
        .collect();
    let events: Vec<serde_json::Value> = (0..260)
        .map(|i| {
            let c = i % channels.len();
            let device = if i % 3 == 0 {
                DEVICE_ID.to_owned()
            } else {
                random_device()
            };
            let action = if i % 3 == 0 {
                "update_fail"
            } else {
                actions[i % actions.len()]
            };
            let mut e = event(&device, action, &format!("1.0.{c}"));
            e["defaultChannel"] = channels[c].clone().into();
            match i % 13 {
                5 => e["version_name"] = "7.7.7".into(),
                7 => e["app_id"] = format!("com.madeup.app{i}").into(),
                _ => {}
            }
            e
        })
        .collect();
    let client = reqwest::Client::new();
    log.0.lock().unwrap().clear();
    let res = client
        .post(format!("{origin}/stats"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let calls = log.0.lock().unwrap().clone();
    let mut by_op: std::collections::BTreeMap<&str, usize> = Default::default();
    for (op, _) in &calls {
        *by_op.entry(op.as_str()).or_default() += 1;
    }
    let transact_items: usize = calls.iter().map(|(_, n)| n).sum();

    // Write units: 2 per KB per transactional item, 1 per KB per single-item write.
    let mut transact_wcu = 0;
    for shard in 0..updraft::store::dynamo::stats::COUNTER_SHARDS {
        let page = plain
            .query()
            .table_name(&table)
            .key_condition_expression("app_id = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    updraft::store::dynamo::stats::counter_partition(APP_ID, shard),
                ),
            )
            .send()
            .await
            .unwrap();
        for item in page.items() {
            transact_wcu += 2 * item_size(item).div_ceil(1024);
        }
    }
    let device_item = plain
        .get_item()
        .table_name(&devices)
        .key(
            "app_id",
            aws_sdk_dynamodb::types::AttributeValue::S(APP_ID.into()),
        )
        .key(
            "device_id",
            aws_sdk_dynamodb::types::AttributeValue::S(DEVICE_ID.into()),
        )
        .send()
        .await
        .unwrap();
    transact_wcu += 2 * item_size(device_item.item().unwrap()).div_ceil(1024);
    let single_writes = by_op.get("PutItem").unwrap_or(&0) + by_op.get("UpdateItem").unwrap_or(&0);
    eprintln!(
        "worst-case /stats request: {} DynamoDB calls {by_op:?}; {transact_items} transaction items = \
         {transact_wcu} write units, plus {single_writes} single-item writes of under 1 KB = \
         {single_writes} write units",
        calls.len()
    );
    assert_eq!(by_op.get("Query"), Some(&1), "the app's releases, once");
    assert_eq!(by_op.get("TransactWriteItems"), Some(&1));
    assert!(transact_items <= updraft::domain::stats::fold::MAX_COUNTERS_PER_BATCH + 1);
    assert!(by_op.get("GetItem").unwrap_or(&0) <= &1);
    // Three writes per evidence mark, one per hourly count (at most one per mark), a trim of
    // the failed versions and a pause.
    assert!(single_writes <= 4 * updraft::domain::stats::fold::MAX_MARKS_PER_BATCH + 2);
    assert!(calls.len() <= 22, "{calls:?}");
    assert!(transact_wcu <= 80, "{transact_wcu} write units");
}
