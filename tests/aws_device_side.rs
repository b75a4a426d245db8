//! The device side on DynamoDB against moto (`UPDRAFT_TEST_MOTO`, started by scripts/test.sh):
//! the devices table (`DynamoDevices`), stats counters and failed versions (`DynamoStats`) and
//! conditional pause/resume (`ops::pauses` on `DynamoStore`). Every test makes its own
//! tables. Items are read back with the raw SDK where their stored form is the contract.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use updraft::domain::keys::parse_release_sk;
use updraft::domain::pause::{PauseRequest, ResumeRequest};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use support::aws::{
    assert_fast, canned_dynamo_error, closed_port, config_for, moto_dynamo, unique,
};
use updraft::domain::device::{ChannelSource, DEFAULT_DEVICE_TTL_SECS, DeviceState};
use updraft::domain::health::Health;
use updraft::domain::stats::fold::{ActionCounts, CounterKey, MAX_FAILED_VERSIONS, StatsBatch};
use updraft::runtime::aws::{AwsTimeouts, dynamo_client};
use updraft::store::dynamo::devices::{DynamoDevices, TTL_ATTRIBUTE};
use updraft::store::dynamo::releases::DynamoStore;
use updraft::store::dynamo::stats::{
    COUNTER_SHARDS, DynamoStats, counter_partition, counter_sk, shard_of,
};
use updraft::store::dynamo::tables::create_devices_table;
use updraft::store::dynamo::tables::create_table;
use updraft::store::{DeviceStore, ReleaseStore, StatsSink, StoreError};

const APP: &str = "com.example.app";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn device(i: u32) -> String {
    format!("6a1f0b3e-1111-4222-8333-{i:012x}")
}

fn batch_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn key(channel: &str, version: &str) -> CounterKey {
    CounterKey {
        app_id: APP.into(),
        channel: channel.into(),
        version: version.into(),
    }
}

fn counts(pairs: &[(&str, u64)]) -> ActionCounts {
    pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect()
}

/// A fresh releases table and devices table on moto.
struct Fixture {
    client: Client,
    releases: String,
    devices_table: String,
}

impl Fixture {
    async fn new() -> Self {
        let client = moto_dynamo(AwsTimeouts::OPERATOR).await;
        let releases = unique("releases");
        let devices_table = unique("devices");
        assert!(
            create_table(&client, &releases)
                .await
                .expect("releases table")
        );
        assert!(
            create_devices_table(&client, &devices_table)
                .await
                .expect("devices table")
        );
        Fixture {
            client,
            releases,
            devices_table,
        }
    }

    fn devices(&self) -> DynamoDevices {
        DynamoDevices::new(
            self.client.clone(),
            &self.releases,
            &self.devices_table,
            DEFAULT_DEVICE_TTL_SECS,
        )
    }

    fn stats(&self) -> DynamoStats {
        DynamoStats::new(
            self.client.clone(),
            &self.releases,
            &self.devices_table,
            DEFAULT_DEVICE_TTL_SECS,
        )
    }

    fn store(&self) -> DynamoStore {
        DynamoStore::new(self.client.clone(), &self.releases)
    }

    /// One item of `table`, as stored.
    async fn raw(
        &self,
        table: &str,
        keys: [(&str, &str); 2],
    ) -> Option<HashMap<String, AttributeValue>> {
        self.client
            .get_item()
            .table_name(table)
            .key(keys[0].0, s(keys[0].1))
            .key(keys[1].0, s(keys[1].1))
            .consistent_read(true)
            .send()
            .await
            .expect("get-item")
            .item
    }

    async fn raw_device(&self, device_id: &str) -> Option<HashMap<String, AttributeValue>> {
        self.raw(
            &self.devices_table,
            [("app_id", APP), ("device_id", device_id)],
        )
        .await
    }

    async fn raw_release(&self, sk: &str) -> Option<HashMap<String, AttributeValue>> {
        self.raw(&self.releases, [("app_id", APP), ("sk", sk)])
            .await
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().expect("a whole number"),
        other => panic!("{name} is {other:?}, not a number"),
    }
}

// ---------------------------------------------------------------------------------------------
// Devices.

#[tokio::test]
async fn channel_overrides_round_trip() {
    let fx = Fixture::new().await;
    let devices = fx.devices();
    let (d, other) = (device(1), device(2));

    assert_eq!(devices.get_device(APP, &d).await.expect("get"), None);

    devices
        .set_channel(APP, &d, "beta", ChannelSource::Operator)
        .await
        .expect("set");
    let state = devices
        .get_device(APP, &d)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(
        state,
        DeviceState {
            channel: Some("beta".into()),
            channel_source: Some(ChannelSource::Operator),
            ..Default::default()
        }
    );
    let raw = fx.raw_device(&d).await.expect("raw item");
    assert_eq!(raw["channel_source"], s("operator"));
    let expires = number(&raw, TTL_ATTRIBUTE);
    let expected = now() + DEFAULT_DEVICE_TTL_SECS;
    assert!(
        expires.abs_diff(expected) <= 60,
        "expires_at {expires}, expected about {expected}"
    );

    // An old plugin's unsetChannel must not undo the operator's assignment.
    devices
        .unset_channel(APP, &d, Some(ChannelSource::Device))
        .await
        .expect("unset device");
    let state = devices
        .get_device(APP, &d)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(state.channel.as_deref(), Some("beta"));

    devices
        .unset_channel(APP, &d, None)
        .await
        .expect("unset all");
    let state = devices
        .get_device(APP, &d)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(
        state,
        DeviceState::default(),
        "the item stays, without override"
    );
    assert!(
        fx.raw_device(&d)
            .await
            .expect("raw")
            .contains_key(TTL_ATTRIBUTE)
    );

    // A device's own choice is removed by its own unset.
    devices
        .set_channel(APP, &other, "qa", ChannelSource::Device)
        .await
        .expect("set");
    devices
        .unset_channel(APP, &other, Some(ChannelSource::Operator))
        .await
        .expect("unset operator only");
    assert_eq!(
        devices
            .get_device(APP, &other)
            .await
            .expect("get")
            .and_then(|s| s.channel),
        Some("qa".into())
    );
    devices
        .unset_channel(APP, &other, Some(ChannelSource::Device))
        .await
        .expect("unset device");
    assert_eq!(
        devices.get_device(APP, &other).await.expect("get"),
        Some(DeviceState::default())
    );

    // Unsetting on a device never written is fine and writes nothing (an item without
    // expires_at would live forever).
    let ghost = device(3);
    for only in [None, Some(ChannelSource::Device)] {
        devices
            .unset_channel(APP, &ghost, only)
            .await
            .expect("unset unknown");
    }
    assert_eq!(fx.raw_device(&ghost).await, None);
}

#[tokio::test]
async fn devices_table_is_created_once_with_ttl() {
    let fx = Fixture::new().await;
    assert!(
        !create_devices_table(&fx.client, &fx.devices_table)
            .await
            .expect("again"),
        "an existing table is accepted, not created"
    );
    let ttl = fx
        .client
        .describe_time_to_live()
        .table_name(&fx.devices_table)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl description");
    assert_eq!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name.as_deref(), Some(TTL_ATTRIBUTE));

    // The releases table's keys are not the devices table's.
    let err = create_devices_table(&fx.client, &fx.releases)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn garbled_device_items_read_as_defaults() {
    let fx = Fixture::new().await;
    let d = device(7);
    let item = HashMap::from([
        ("app_id".to_owned(), s(APP)),
        ("device_id".to_owned(), s(&d)),
        ("channel".to_owned(), AttributeValue::L(vec![s("beta")])),
        ("channel_source".to_owned(), s("root")),
        ("failed_versions".to_owned(), s("1.0.0")),
        ("last_seen".to_owned(), s("yesterday")),
    ]);
    fx.client
        .put_item()
        .table_name(&fx.devices_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put-item");
    assert_eq!(
        fx.devices().get_device(APP, &d).await.expect("get"),
        Some(DeviceState::default())
    );
}

// ---------------------------------------------------------------------------------------------
// Stats.

#[tokio::test]
async fn a_batch_adds_counters_and_failed_versions() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    let (d1, d2) = (device(1), device(2));
    let prod = key("production", "1.0.1");
    let beta = key("beta", "1.2.0");
    let batch = StatsBatch {
        id: batch_id(),
        counts: BTreeMap::from([
            (prod.clone(), counts(&[("set", 3), ("update_fail", 2)])),
            (beta.clone(), counts(&[("set", 1), ("download_fail", 4)])),
        ]),
        device_failures: BTreeSet::from([
            (APP.into(), d1.clone(), "1.0.1".into()),
            (APP.into(), d1.clone(), "1.0.0".into()),
        ]),
        devices_seen: BTreeSet::from([(APP.into(), d1.clone()), (APP.into(), d2.clone())]),
    };
    let before = now();
    stats.record(&batch).await.expect("record");

    assert_eq!(
        stats.counts(&prod).await.expect("counts"),
        counts(&[("set", 3), ("update_fail", 2)])
    );
    assert_eq!(
        stats
            .counts(&key("production", "9.9.9"))
            .await
            .expect("counts"),
        ActionCounts::new()
    );

    // A second batch lands on its own shard (most likely another one); readers add them up.
    let second = StatsBatch {
        id: batch_id(),
        counts: BTreeMap::from([(prod.clone(), counts(&[("set", 5), ("reset", 1)]))]),
        devices_seen: BTreeSet::from([(APP.into(), d2.clone())]),
        ..Default::default()
    };
    stats.record(&second).await.expect("record");
    assert_eq!(
        stats.counts(&prod).await.expect("counts"),
        counts(&[("set", 8), ("update_fail", 2), ("reset", 1)])
    );
    assert_eq!(
        stats.app_counts(APP).await.expect("app counts"),
        vec![
            (beta.clone(), counts(&[("set", 1), ("download_fail", 4)])),
            (
                prod.clone(),
                counts(&[("set", 8), ("update_fail", 2), ("reset", 1)])
            ),
        ],
        "sorted by channel, then version"
    );
    assert_eq!(
        stats.app_counts("com.example.other").await.expect("other"),
        vec![]
    );

    // The stored form: one item per shard, n_<action> numbers, channel and version.
    let shard = shard_of(&batch.id);
    let raw = fx
        .raw(
            &fx.releases,
            [
                ("app_id", &counter_partition(APP, shard)),
                ("sk", &counter_sk("beta", "1.2.0")),
            ],
        )
        .await
        .expect("counter item");
    assert_eq!(number(&raw, "n_download_fail"), 4);
    assert_eq!(raw["channel"], s("beta"));
    assert_eq!(raw["version"], s("1.2.0"));
    // Counters never show up as the app's release items.
    assert!(fx.store().load_app(APP).await.expect("load").is_none());

    let devices = fx.devices();
    let one = devices
        .get_device(APP, &d1)
        .await
        .expect("get")
        .expect("d1");
    assert_eq!(
        one.failed_versions,
        BTreeSet::from(["1.0.0".to_owned(), "1.0.1".to_owned()])
    );
    assert!(one.last_seen.is_some_and(|t| t >= before && t <= now()));
    let two = devices
        .get_device(APP, &d2)
        .await
        .expect("get")
        .expect("d2");
    assert!(two.failed_versions.is_empty());
    assert!(two.last_seen.is_some());
    let raw = fx.raw_device(&d2).await.expect("raw d2");
    assert!(number(&raw, TTL_ATTRIBUTE) >= before + DEFAULT_DEVICE_TTL_SECS);
}

#[tokio::test]
async fn a_failed_batch_writes_nothing() {
    let fx = Fixture::new().await;
    // The devices' Updates name a table that does not exist: the whole transaction fails.
    let broken = DynamoStats::new(
        fx.client.clone(),
        &fx.releases,
        unique("no-such-devices"),
        DEFAULT_DEVICE_TTL_SECS,
    );
    let prod = key("production", "1.0.1");
    let batch = StatsBatch {
        id: batch_id(),
        counts: BTreeMap::from([
            (prod.clone(), counts(&[("set", 3)])),
            (key("beta", "1.2.0"), counts(&[("set", 1)])),
        ]),
        device_failures: BTreeSet::new(),
        devices_seen: BTreeSet::from([(APP.into(), device(1))]),
    };
    let err = broken.record(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");

    let stats = fx.stats();
    assert_eq!(
        stats.counts(&prod).await.expect("counts"),
        ActionCounts::new()
    );
    assert_eq!(stats.app_counts(APP).await.expect("app counts"), vec![]);
    assert_eq!(fx.raw_device(&device(1)).await, None);
}

#[tokio::test]
async fn an_empty_batch_is_a_no_op() {
    // Nothing listens on this port: a request would fail.
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let client = dynamo_client(&config_for(&endpoint, AwsTimeouts::SERVING).await);
    let stats = DynamoStats::new(client, "releases", "devices", DEFAULT_DEVICE_TTL_SECS);
    stats
        .record(&StatsBatch {
            id: batch_id(),
            ..Default::default()
        })
        .await
        .expect("nothing to write");
    // And a real batch against that endpoint fails fast, as unavailable.
    let started = Instant::now();
    let err = stats
        .record(&StatsBatch {
            id: batch_id(),
            counts: BTreeMap::from([(key("production", "1.0.1"), counts(&[("set", 1)]))]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_fast(
        "record on a closed port",
        started.elapsed(),
        Duration::from_secs(6),
    );
}

/// A stats store whose DynamoDB answers every request with `body`, and the request count.
async fn stats_answered_with(
    body: &'static str,
) -> (DynamoStats, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (endpoint, count) = canned_dynamo_error(body).await;
    let client = dynamo_client(&config_for(&endpoint, AwsTimeouts::SERVING).await);
    let stats = DynamoStats::new(client, "releases", "devices", DEFAULT_DEVICE_TTL_SECS);
    (stats, count)
}

fn one_event_batch() -> StatsBatch {
    StatsBatch {
        id: batch_id(),
        counts: BTreeMap::from([(key("production", "1.0.1"), counts(&[("set", 1)]))]),
        devices_seen: BTreeSet::from([(APP.into(), device(1))]),
        ..Default::default()
    }
}

#[tokio::test]
async fn lost_races_are_retried_and_resends_accepted() {
    use std::sync::atomic::Ordering;
    // Concurrent transactions on one counter: DynamoDB cancels all but one, and a cancelled
    // transaction wrote nothing, so it is sent again (moto never conflicts).
    let (stats, count) = stats_answered_with(
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, None]","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"},{"Code":"None"}]}"#,
    )
    .await;
    let started = Instant::now();
    let err = stats.record(&one_event_batch()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3, "three attempts, then 503");
    assert_fast(
        "conflict retries",
        started.elapsed(),
        Duration::from_secs(2),
    );

    // Any other cancellation is final: the plugin resends the batch later.
    let (stats, count) = stats_answered_with(
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [ValidationError, None]","CancellationReasons":[{"Code":"ValidationError","Message":"bad"},{"Code":"None"}]}"#,
    )
    .await;
    let err = stats.record(&one_event_batch()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // A resend of a batch DynamoDB already applied (same token, a later clock): done.
    let (stats, count) = stats_answered_with(
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException","message":"Request token is already used with different parameters"}"#,
    )
    .await;
    stats
        .record(&one_event_batch())
        .await
        .expect("already recorded");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_versions_accumulate_as_a_set() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    let d = device(1);
    for versions in [&["1.0.1"][..], &["1.0.2", "1.0.1"], &[]] {
        let batch = StatsBatch {
            id: batch_id(),
            counts: BTreeMap::from([(key("production", "1.0.1"), counts(&[("set", 1)]))]),
            device_failures: versions
                .iter()
                .map(|v| (APP.to_owned(), d.clone(), v.to_string()))
                .collect(),
            devices_seen: BTreeSet::from([(APP.into(), d.clone())]),
        };
        stats.record(&batch).await.expect("record");
    }
    let state = fx
        .devices()
        .get_device(APP, &d)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(
        state.failed_versions,
        BTreeSet::from(["1.0.1".to_owned(), "1.0.2".to_owned()])
    );
    // The stored form is a string set.
    let raw = fx.raw_device(&d).await.expect("raw");
    assert!(
        matches!(&raw["failed_versions"], AttributeValue::Ss(v) if v.len() == 2),
        "{:?}",
        raw["failed_versions"]
    );
    // An operator's override survives the stats writes, and vice versa.
    fx.devices()
        .set_channel(APP, &d, "beta", ChannelSource::Operator)
        .await
        .expect("set");
    let batch = StatsBatch {
        id: batch_id(),
        device_failures: BTreeSet::from([(APP.into(), d.clone(), "1.0.3".into())]),
        devices_seen: BTreeSet::from([(APP.into(), d.clone())]),
        ..Default::default()
    };
    stats.record(&batch).await.expect("record");
    let state = fx
        .devices()
        .get_device(APP, &d)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(state.channel.as_deref(), Some("beta"));
    assert_eq!(state.failed_versions.len(), 3);
}

#[tokio::test]
async fn a_batch_over_100_items_is_split_and_still_sums() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    // 250 events over 120 releases (2 each, 10 of them 3) and 40 devices: 160 items, two
    // transactions.
    let mut batch = StatsBatch {
        id: batch_id(),
        ..Default::default()
    };
    let mut expected = BTreeMap::new();
    for i in 0..120u32 {
        let n = if i < 10 { 3 } else { 2 };
        let c = counts(&[("set", n - 1), ("update_fail", 1)]);
        batch
            .counts
            .insert(key("production", &format!("1.0.{i}")), c.clone());
        expected.insert(key("production", &format!("1.0.{i}")), c);
    }
    for i in 0..40 {
        batch.devices_seen.insert((APP.into(), device(i)));
    }
    batch
        .device_failures
        .insert((APP.into(), device(0), "1.0.0".into()));
    let events: u64 = batch.counts.values().flat_map(|c| c.values()).sum();
    assert_eq!(events, 250);

    stats.record(&batch).await.expect("record");
    let got: BTreeMap<_, _> = stats
        .app_counts(APP)
        .await
        .expect("app counts")
        .into_iter()
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        stats
            .counts(&key("production", "1.0.119"))
            .await
            .expect("counts"),
        counts(&[("set", 1), ("update_fail", 1)])
    );
    let devices = fx.devices();
    for i in [0, 39] {
        let state = devices
            .get_device(APP, &device(i))
            .await
            .expect("get")
            .expect("item");
        assert!(state.last_seen.is_some());
    }
}

#[tokio::test]
async fn forged_batches_are_written_too() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    // 500 distinct (unknown) actions on one release: more than one Update expression holds.
    let prod = key("production", "1.0.1");
    let many: ActionCounts = (0..500)
        .map(|i| (format!("custom_{i}"), 1 + i % 3))
        .collect();
    // Two keys that meet on one item (`counter#a#b#c`): counted together, not refused.
    let (k1, k2) = (key("a", "b#c"), key("a#b", "c"));
    let batch = StatsBatch {
        id: batch_id(),
        counts: BTreeMap::from([
            (prod.clone(), many.clone()),
            (k1.clone(), counts(&[("set", 1)])),
            (k2, counts(&[("set", 2)])),
        ]),
        ..Default::default()
    };
    stats.record(&batch).await.expect("record");
    assert_eq!(stats.counts(&prod).await.expect("counts"), many);
    assert_eq!(
        stats.counts(&k1).await.expect("counts"),
        counts(&[("set", 3)])
    );
}

/// A batch id whose counters land on `shard`.
fn id_for_shard(shard: u8) -> String {
    format!("{shard:02x}{:030x}", rand::random::<u128>() >> 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_give_exact_totals() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    let prod = key("production", "1.0.1");
    let beta = key("beta", "2.0.0");
    let shared = device(999);
    let batch = |id: String, i: u32| StatsBatch {
        id,
        counts: BTreeMap::from([
            (prod.clone(), counts(&[("set", 2), ("update_fail", 1)])),
            (beta.clone(), counts(&[("set", 1)])),
        ]),
        device_failures: BTreeSet::from([(APP.into(), shared.clone(), format!("0.{i}"))]),
        devices_seen: BTreeSet::from([(APP.into(), device(i)), (APP.into(), shared.clone())]),
    };
    // First one batch per shard, one after another: moto creates an item that an update
    // finds missing without a lock, so two concurrent first writes to one item lose one of
    // them there (DynamoDB creates atomically). Every shard item and the shared device exist
    // before the concurrent part.
    for shard in 0..COUNTER_SHARDS {
        let b = batch(id_for_shard(shard), 100 + u32::from(shard));
        assert_eq!(shard_of(&b.id), shard);
        stats.record(&b).await.expect("record");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let (stats, b) = (stats.clone(), batch(batch_id(), i));
        tasks.spawn(async move { stats.record(&b).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("record");
    }
    let n = 20 + u64::from(COUNTER_SHARDS);
    assert_eq!(
        stats.counts(&prod).await.expect("counts"),
        counts(&[("set", 2 * n), ("update_fail", n)])
    );
    assert_eq!(
        stats.app_counts(APP).await.expect("app counts"),
        vec![
            (beta.clone(), counts(&[("set", n)])),
            (prod.clone(), counts(&[("set", 2 * n), ("update_fail", n)])),
        ]
    );
    let state = fx
        .devices()
        .get_device(APP, &shared)
        .await
        .expect("get")
        .expect("item");
    // Concurrent batches add their versions atomically; each trims to the newest 20 by what
    // it read, so a race can leave a few more, until the device's next failure.
    assert!(state.failed_versions.len() >= MAX_FAILED_VERSIONS);
    let mut last = batch(batch_id(), 200);
    last.counts.clear();
    last.device_failures = BTreeSet::from([(APP.into(), shared.clone(), "9.9.9".into())]);
    stats.record(&last).await.expect("record");
    let state = fx
        .devices()
        .get_device(APP, &shared)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(
        state.failed_versions.len(),
        MAX_FAILED_VERSIONS,
        "the newest 20"
    );
    assert!(state.failed_versions.contains("9.9.9"));
}

#[tokio::test]
async fn every_shard_is_read() {
    let fx = Fixture::new().await;
    let stats = fx.stats();
    let prod = key("production", "1.0.1");
    // Write one count into each shard by hand, as batches with those shards would.
    for shard in 0..COUNTER_SHARDS {
        fx.client
            .update_item()
            .table_name(&fx.releases)
            .key("app_id", s(&counter_partition(APP, shard)))
            .key("sk", s(&counter_sk("production", "1.0.1")))
            .update_expression("SET #c = :c, #v = :v ADD #n :one")
            .expression_attribute_names("#c", "channel")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#n", "n_set")
            .expression_attribute_values(":c", s("production"))
            .expression_attribute_values(":v", s("1.0.1"))
            .expression_attribute_values(
                ":one",
                AttributeValue::N(u64::from(shard + 1).to_string()),
            )
            .send()
            .await
            .expect("update-item");
    }
    let total: u64 = (1..=u64::from(COUNTER_SHARDS)).sum();
    assert_eq!(
        stats.counts(&prod).await.expect("counts"),
        counts(&[("set", total)])
    );
    assert_eq!(
        stats.app_counts(APP).await.expect("app counts"),
        vec![(prod, counts(&[("set", total)]))]
    );
}

// ---------------------------------------------------------------------------------------------
// Pause and resume.

const SK: &str = "release#production#all";

async fn put_release(fx: &Fixture, sk: &str, version: &str) {
    fx.client
        .put_item()
        .table_name(&fx.releases)
        .item("app_id", s(APP))
        .item("sk", s(sk))
        .item("version", s(version))
        .item("bundle", s("com.example.app/1.0.1/x.zip"))
        .send()
        .await
        .expect("put-item");
}

/// Pausing and resuming a release item of `DynamoStore` as the operations do it: the rule of
/// `domain::pause`, written with its history entry, conditioned on the item's revision.
trait Control {
    async fn pause_release(
        &self,
        app: &str,
        sk: &str,
        p: &PauseRequest,
    ) -> Result<bool, StoreError>;
    async fn resume_release(
        &self,
        app: &str,
        sk: &str,
        r: &ResumeRequest,
    ) -> Result<bool, StoreError>;
}

impl Control for DynamoStore {
    async fn pause_release(
        &self,
        app: &str,
        sk: &str,
        p: &PauseRequest,
    ) -> Result<bool, StoreError> {
        let (channel, target) = parse_release_sk(sk).expect("a release sort key");
        let at = p.now * 1_000_000;
        updraft::ops::pauses::pause_release(self, self, app, channel, target, p, at).await
    }

    async fn resume_release(
        &self,
        app: &str,
        sk: &str,
        r: &ResumeRequest,
    ) -> Result<bool, StoreError> {
        let (channel, target) = parse_release_sk(sk).expect("a release sort key");
        let at = r.now * 1_000_000;
        updraft::ops::pauses::resume_release(self, self, app, channel, target, r, at).await
    }
}

fn pause_at(version: &str, now: u64) -> PauseRequest {
    PauseRequest {
        version: version.into(),
        reason: format!("auto-paused at {now}"),
        now,
        cooldown_secs: 3600,
        who: None,
    }
}

fn resume_at(now: u64, baseline: Health) -> ResumeRequest {
    ResumeRequest {
        version: "1.0.1".into(),
        now,
        baseline,
        who: "tester".into(),
    }
}

#[tokio::test]
async fn pause_is_conditional() {
    let fx = Fixture::new().await;
    let store = fx.store();
    put_release(&fx, SK, "1.0.1").await;

    // Not when the item serves another version (a new release went out meanwhile).
    assert!(
        !store
            .pause_release(APP, SK, &pause_at("1.0.0", 10))
            .await
            .expect("pause")
    );
    assert!(
        !fx.raw_release(SK)
            .await
            .expect("item")
            .contains_key("paused")
    );
    // Never on a missing item (and none is created).
    assert!(
        !store
            .pause_release(APP, "release#beta#all", &pause_at("1.0.1", 10))
            .await
            .expect("pause")
    );
    assert_eq!(fx.raw_release("release#beta#all").await, None);

    // Once; the cooldown saturates at 0 for a release never resumed.
    assert!(
        store
            .pause_release(APP, SK, &pause_at("1.0.1", 10))
            .await
            .expect("pause")
    );
    assert!(
        !store
            .pause_release(APP, SK, &pause_at("1.0.1", 11))
            .await
            .expect("pause")
    );
    let raw = fx.raw_release(SK).await.expect("item");
    assert_eq!(raw["paused"], AttributeValue::Bool(true));
    assert_eq!(raw["pause_reason"], s("auto-paused at 10"));
    assert_eq!(number(&raw, "paused_at"), 10);
    // The paused release is what update checks see.
    let snap = store.load_app(APP).await.expect("load").expect("snapshot");
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);

    // Resume records the baseline and clears the reason.
    let baseline = Health {
        installs: 120,
        failures: 30,
    };
    assert!(
        store
            .resume_release(APP, SK, &resume_at(5000, baseline))
            .await
            .expect("resume")
    );
    let raw = fx.raw_release(SK).await.expect("item");
    assert_eq!(raw["paused"], AttributeValue::Bool(false));
    assert_eq!(number(&raw, "resumed_at"), 5000);
    assert_eq!(number(&raw, "pause_baseline_installs"), 120);
    assert_eq!(number(&raw, "pause_baseline_failures"), 30);
    assert!(!raw.contains_key("pause_reason"));
    assert!(!raw.contains_key("paused_at"));
    assert_eq!(raw["version"], s("1.0.1"), "other attributes are kept");

    // No new pause within the cooldown; one again once it has passed.
    assert!(
        !store
            .pause_release(APP, SK, &pause_at("1.0.1", 5001))
            .await
            .expect("pause")
    );
    assert!(
        !store
            .pause_release(APP, SK, &pause_at("1.0.1", 8599))
            .await
            .expect("pause")
    );
    assert!(
        store
            .pause_release(APP, SK, &pause_at("1.0.1", 8600))
            .await
            .expect("pause")
    );
    let raw = fx.raw_release(SK).await.expect("item");
    assert_eq!(raw["paused"], AttributeValue::Bool(true));
    assert_eq!(number(&raw, "paused_at"), 8600);
}

#[tokio::test]
async fn resume_needs_the_item() {
    let fx = Fixture::new().await;
    let store = fx.store();
    assert!(
        !store
            .resume_release(APP, SK, &resume_at(100, Health::default()))
            .await
            .expect("resume")
    );
    assert_eq!(fx.raw_release(SK).await, None, "no bare item is created");

    // A hand-written `paused = false` counts as not paused.
    put_release(&fx, SK, "1.0.1").await;
    fx.client
        .update_item()
        .table_name(&fx.releases)
        .key("app_id", s(APP))
        .key("sk", s(SK))
        .update_expression("SET #p = :f")
        .expression_attribute_names("#p", "paused")
        .expression_attribute_values(":f", AttributeValue::Bool(false))
        .send()
        .await
        .expect("update-item");
    assert!(
        store
            .pause_release(APP, SK, &pause_at("1.0.1", 10))
            .await
            .expect("pause")
    );
}

#[tokio::test]
async fn control_on_a_missing_table_is_unavailable() {
    let client = moto_dynamo(AwsTimeouts::SERVING).await;
    let store = DynamoStore::new(client, unique("missing"));
    let err = store
        .pause_release(APP, SK, &pause_at("1.0.1", 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let err = store
        .resume_release(APP, SK, &resume_at(10, Health::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}
