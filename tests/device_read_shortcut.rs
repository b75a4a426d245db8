//! The update check reads a device's item only when the answer could depend on it, on both
//! backends (the embedded store, and DynamoDB on moto with every call counted):
//! - an up-to-date device of an app without device overrides costs no DynamoDB call once the
//!   app's items are cached, and an offer costs one `GetItem` (the device's failed versions);
//! - a failed version reported after the app's items were cached is honoured at the next check
//!   (a check that could offer it reads the device);
//! - an override set after the app's items were cached is honoured within `UPDRAFT_CACHE_TTL`
//!   (its marker arrives with the next read of the app's items);
//! - overrides written before the marker existed are marked by `updraft device mark-overrides`
//!   (DynamoDB) or when the embedded store opens such a database.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::aws::{CallLog, config_for, emulator, unique};
use support::{APP_ID, DEVICE_ID, plugin_body, serve};
use updraft::bundles::local::LocalBundles;
use updraft::bundles::s3::S3Bundles;
use updraft::domain::device::ChannelSource;
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::keys::{Target, release_sk};
use updraft::runtime::aws::{AwsTimeouts, dynamo_client, s3_client};
use updraft::runtime::backend::AwsTables;
use updraft::store::dynamo::devices::DynamoDevices;
use updraft::store::dynamo::releases::DynamoStore;
use updraft::store::dynamo::tables::create_devices_table;
use updraft::store::dynamo::tables::create_table;
use updraft::store::embedded::EmbeddedStore;
use updraft::store::{DeviceStore, ItemWriter};

const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";
/// The cache lifetime of these tests: long enough that every check but the awaited one is
/// served from the cache, short enough to wait out.
const TTL: Duration = Duration::from_secs(2);

/// A server with a `TTL` cache, the operator's writers of the same stores, and (on DynamoDB)
/// the server's calls.
struct Harness {
    origin: String,
    items: Arc<dyn ItemWriter>,
    devices: Arc<dyn DeviceStore>,
    calls: Option<CallLog>,
    /// DynamoDB: the client and devices table, to write an item as an older updraft did.
    raw: Option<(aws_sdk_dynamodb::Client, String)>,
    _keep: Option<tempfile::TempDir>,
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let bundles = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
    let origin = serve(updraft::runtime::backend::embedded_state(
        store.clone(),
        bundles,
        TTL,
    ))
    .await;
    let shared = Arc::new(store);
    Harness {
        origin,
        items: shared.clone(),
        devices: shared,
        calls: None,
        raw: None,
        _keep: Some(dir),
    }
}

async fn dynamo() -> Harness {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let plain = dynamo_client(&conf);
    let calls = CallLog::default();
    let counted = calls.client(&conf);
    let (table, devices) = (unique("releases"), unique("devices"));
    create_table(&plain, &table).await.unwrap();
    create_devices_table(&plain, &devices).await.unwrap();
    let state = updraft::runtime::backend::aws_state(
        &counted,
        &counted,
        S3Bundles::new(s3_client(&conf), "bundles", Duration::from_secs(60)),
        AwsTables {
            releases: &table,
            devices: &devices,
            device_ttl: 3600,
        },
        TTL,
    );
    let origin = serve(state).await;
    Harness {
        origin,
        items: Arc::new(DynamoStore::new(plain.clone(), table.clone())),
        devices: Arc::new(DynamoDevices::new(
            plain.clone(),
            table,
            devices.clone(),
            3600,
        )),
        calls: Some(calls),
        raw: Some((plain, devices)),
        _keep: None,
    }
}

impl Harness {
    async fn release(&self, channel: &str, version: &str) {
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S(version.into()));
        item.insert(
            "url".into(),
            AttrValue::S("https://cdn.example.com/b.zip".into()),
        );
        item.insert("checksum".into(), AttrValue::S(SUM.into()));
        item.insert("allow_self_assign".into(), AttrValue::Bool(true));
        self.items
            .put_item(APP_ID, &release_sk(channel, Target::All), &item)
            .await
            .unwrap();
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.origin))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.json().await.unwrap()
    }

    /// The answer's error code, or the version it offers.
    async fn check(&self, version_name: &str) -> String {
        let a = self
            .post("/updates", &plugin_body(APP_ID, "1.0.0", version_name))
            .await;
        a["error"]
            .as_str()
            .or(a["version"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// The DynamoDB calls the server made since the last look (none on the embedded store).
    fn calls(&self) -> Vec<String> {
        self.calls
            .as_ref()
            .map(CallLog::take_ops)
            .unwrap_or_default()
    }
}

async fn no_device_read_when_up_to_date(h: Harness) {
    h.release("production", "1.0.1").await;
    assert_eq!(h.check("1.0.1").await, "no_new_version_available");
    if h.calls.is_some() {
        // The first check finds the cache cold: it reads the app's items and the device's
        // item at once (one round trip), as every check did before the shortcut.
        let mut calls = h.calls();
        calls.sort();
        assert_eq!(calls, ["GetItem", "Query"]);
    }
    for _ in 0..5 {
        assert_eq!(h.check("1.0.1").await, "no_new_version_available");
    }
    assert_eq!(h.calls(), Vec::<String>::new(), "cached and up to date");
    // An offer reads the device once, to honour its failed versions.
    assert_eq!(h.check("1.0.0").await, "1.0.1");
    if h.calls.is_some() {
        assert_eq!(h.calls(), ["GetItem"]);
    }
}

#[tokio::test]
async fn no_device_read_when_up_to_date_embedded() {
    no_device_read_when_up_to_date(embedded().await).await;
}

#[tokio::test]
async fn no_device_read_when_up_to_date_dynamo() {
    no_device_read_when_up_to_date(dynamo().await).await;
}

async fn failed_version_after_caching(h: Harness) {
    h.release("production", "1.0.1").await;
    assert_eq!(h.check("1.0.0").await, "1.0.1");
    let mut failed = plugin_body(APP_ID, "1.0.0", "1.0.1");
    failed["action"] = "update_fail".into();
    failed["old_version_name"] = "1.0.0".into();
    failed["timestamp"] = 1_795_910_400_000u64.into();
    h.post("/stats", &serde_json::json!([failed])).await;
    // The app's items are still the cached ones; the check that would offer 1.0.1 reads the
    // device and refuses it.
    h.calls();
    assert_eq!(h.check("1.0.0").await, "version_failed_on_device");
    if h.calls.is_some() {
        assert_eq!(h.calls(), ["GetItem"]);
    }
}

#[tokio::test]
async fn failed_version_after_caching_embedded() {
    failed_version_after_caching(embedded().await).await;
}

#[tokio::test]
async fn failed_version_after_caching_dynamo() {
    failed_version_after_caching(dynamo().await).await;
}

async fn override_after_caching(h: Harness) {
    h.release("production", "1.0.1").await;
    h.release("beta", "1.0.2").await;
    let cached_at = Instant::now();
    assert_eq!(h.check("1.0.1").await, "no_new_version_available");
    h.devices
        .set_channel(APP_ID, DEVICE_ID, "beta", ChannelSource::Operator)
        .await
        .unwrap();
    // Honoured once the cached items (read without the marker) expire: awaited, bounded.
    let deadline = cached_at + TTL + Duration::from_secs(3);
    loop {
        match h.check("1.0.1").await.as_str() {
            "1.0.2" => break,
            "no_new_version_available" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("the override was not honoured within the cache TTL: {other}"),
        }
    }
    // From then on every check of the app reads the device's item.
    h.calls();
    assert_eq!(h.check("1.0.2").await, "no_new_version_available");
    if h.calls.is_some() {
        assert_eq!(h.calls(), ["GetItem"]);
    }
    // Removing the override keeps the marker (reads continue; answers follow the device).
    h.devices
        .unset_channel(APP_ID, DEVICE_ID, None)
        .await
        .unwrap();
    assert_eq!(h.check("1.0.2").await, "1.0.1");
}

#[tokio::test]
async fn override_after_caching_embedded() {
    override_after_caching(embedded().await).await;
}

#[tokio::test]
async fn override_after_caching_dynamo() {
    override_after_caching(dynamo().await).await;
}

/// An override an older updraft wrote (no marker) is not read until the app is marked; then it
/// is honoured within the cache TTL.
#[tokio::test]
async fn overrides_from_before_the_marker_are_marked_dynamo() {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let h = dynamo().await;
    h.release("production", "1.0.1").await;
    h.release("beta", "1.0.2").await;
    let (client, devices) = h.raw.clone().unwrap();
    client
        .put_item()
        .table_name(&devices)
        .item("app_id", Av::S(APP_ID.into()))
        .item("device_id", Av::S(DEVICE_ID.into()))
        .item("channel", Av::S("beta".into()))
        .item("channel_source", Av::S("operator".into()))
        .item("expires_at", Av::N("4102444800".into()))
        .send()
        .await
        .unwrap();
    let cached_at = Instant::now();
    assert_eq!(h.check("1.0.1").await, "no_new_version_available");
    assert_eq!(h.devices.mark_existing_overrides().await.unwrap(), [APP_ID]);
    let deadline = cached_at + TTL + Duration::from_secs(3);
    while h.check("1.0.1").await != "1.0.2" {
        assert!(
            Instant::now() < deadline,
            "the marked override was not honoured"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn overrides_from_before_the_marker_are_marked_embedded() {
    use updraft::store::ReleaseStore;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut item = Item::new();
    item.insert("version".into(), AttrValue::S("1.0.1".into()));
    item.insert(
        "url".into(),
        AttrValue::S("https://cdn.example.com/b.zip".into()),
    );
    item.insert("checksum".into(), AttrValue::S(SUM.into()));
    store
        .put_item(APP_ID, &release_sk("production", Target::All), &item)
        .await
        .unwrap();
    drop(store);
    // As an older updraft left it: an override, no marker, user_version 0.
    let conn = rusqlite::Connection::open(dir.path().join("updraft.db")).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO devices (app_id, device_id, channel, channel_source, expires_at)
         VALUES ('{APP_ID}', '{DEVICE_ID}', 'beta', 'operator', 4102444800);
         PRAGMA user_version = 0;"
    ))
    .unwrap();
    drop(conn);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let snap = store.load_app(APP_ID).await.unwrap().unwrap();
    assert!(snap.device_overrides, "opening the store marks the app");
    assert_eq!(store.mark_existing_overrides().await.unwrap(), [APP_ID]);
}
