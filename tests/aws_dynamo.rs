//! `DynamoStore` against moto's DynamoDB (`UPDRAFT_TEST_MOTO`, started by scripts/test.sh).
//! Items are written with the raw SDK, exactly as an operator would with
//! `aws dynamodb put-item`, so these tests pin the public item contract of design.md §3.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use support::aws::{assert_fast, closed_port, config_for, emulator, hanging_endpoint, unique};
use updraft::domain::decide::{Decision, decide_update};
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::protocol::parse_update_request;
use updraft::domain::snapshot::AppSnapshot;
use updraft::runtime::aws::{AwsTimeouts, dynamo_client};
use updraft::store::dynamo::releases::DynamoStore;
use updraft::store::dynamo::tables::create_table;
use updraft::store::{ItemWriter, ReleaseStore, StoreError};

const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";
/// How long a failing store may make a device wait (SERVING allows ~4 s).
const FAULT_BOUND: Duration = Duration::from_secs(6);

/// A fresh table on moto, and a store reading it.
async fn fresh() -> (Client, DynamoStore) {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let client = dynamo_client(&conf);
    let table = unique("updraft-test");
    assert!(create_table(&client, &table).await.expect("create table"));
    (client.clone(), DynamoStore::new(client, table))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

/// `aws dynamodb put-item --item '{"app_id":{"S":…},"sk":{"S":…},…}'`.
async fn put<K: AsRef<str>>(
    client: &Client,
    store: &DynamoStore,
    app: &str,
    sk: &str,
    attrs: &[(K, AttributeValue)],
) {
    let mut item: HashMap<String, AttributeValue> = attrs
        .iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.clone()))
        .collect();
    item.insert("app_id".into(), s(app));
    item.insert("sk".into(), s(sk));
    client
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .expect("put-item");
}

/// Attributes of one item, as written by hand.
type Attrs = Vec<(String, AttributeValue)>;

/// A plain release item: version, bundle key and checksum, plus `extra`.
fn release(version: &str, extra: &[(&str, AttributeValue)]) -> Attrs {
    let mut attrs = vec![
        ("version".to_owned(), s(version)),
        (
            "bundle".to_owned(),
            s(&format!("com.example.app/{version}/{SUM}.zip")),
        ),
        ("checksum".to_owned(), s(SUM)),
    ];
    attrs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    attrs
}

/// The plugin's update check body (protocol.md §1).
fn check(
    app: &str,
    platform: &str,
    version_build: &str,
    version_name: &str,
    channel: &str,
) -> String {
    format!(
        r#"{{"platform":"{platform}","device_id":"6A1F0B3E-1111-4222-8333-9C2D00000000","app_id":"{app}",
        "custom_id":"","version_build":"{version_build}","version_code":"1","version_os":"14",
        "version_name":"{version_name}","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,
        "defaultChannel":"{channel}"}}"#
    )
}

/// What the device gets: `offer <channel> <version>`, `reset <channel>` or the refusal code and
/// message.
fn answer(body: &str, snap: Option<&AppSnapshot>) -> String {
    let req = parse_update_request(body.as_bytes()).expect("valid request");
    match decide_update(&req, snap, None) {
        Decision::Offer { channel, release } => format!("offer {channel} {}", release.version_text),
        Decision::Reset { channel } => format!("reset {channel}"),
        Decision::Refuse(r) => format!("{} {}", r.code.as_str(), r.message),
    }
}

async fn load(store: &DynamoStore, app: &str) -> AppSnapshot {
    store
        .load_app(app)
        .await
        .expect("load_app")
        .unwrap_or_else(|| panic!("{app} has items"))
}

#[tokio::test]
async fn channels_and_platforms_follow_the_items() {
    let (client, store) = fresh().await;
    let app = "com.example.app";
    put(
        &client,
        &store,
        app,
        "release#production#all",
        &release("1.0.3", &[]),
    )
    .await;
    put(
        &client,
        &store,
        app,
        "release#production#ios",
        &release("1.1.0", &[]),
    )
    .await;
    put(
        &client,
        &store,
        app,
        "release#beta#all",
        &release("1.2.0", &[("allow_self_assign", b(true))]),
    )
    .await;
    put(
        &client,
        &store,
        app,
        "release#qa#all",
        &release("1.3.0", &[]),
    )
    .await;
    // Bundle items share the partition but are not part of the snapshot.
    put(&client, &store, app, "bundle#1.0.3", &[("sha256", s(SUM))]).await;

    let snap = load(&store, app).await;
    assert_eq!(snap.default_channel, "production");
    assert_eq!(snap.channels.len(), 3, "{:?}", snap.channels.keys());
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    let snap = Some(&snap);

    // Default channel, `all` as the fallback, and a platform's own item over `all`.
    assert_eq!(
        answer(&check(app, "android", "1.0.0", "builtin", ""), snap),
        "offer production 1.0.3"
    );
    assert_eq!(
        answer(&check(app, "ios", "1.0.0", "builtin", ""), snap),
        "offer production 1.1.0"
    );
    assert!(
        answer(&check(app, "android", "1.0.0", "1.0.3", ""), snap)
            .starts_with("no_new_version_available ")
    );
    // A self-assignable channel may be asked for; one that is not is refused, not replaced.
    assert_eq!(
        answer(&check(app, "android", "1.0.0", "builtin", "beta"), snap),
        "offer beta 1.2.0"
    );
    assert!(
        answer(&check(app, "android", "1.0.0", "builtin", "qa"), snap).starts_with("no_channel ")
    );
    assert!(
        answer(&check(app, "android", "1.0.0", "builtin", "nope"), snap).starts_with("no_channel ")
    );
    // Asking for the default channel by name is always fine.
    assert_eq!(
        answer(
            &check(app, "android", "1.0.0", "builtin", "production"),
            snap
        ),
        "offer production 1.0.3"
    );
}

#[tokio::test]
async fn the_app_item_sets_the_default_channel() {
    let (client, store) = fresh().await;
    let app = "com.example.stable";
    put(
        &client,
        &store,
        app,
        "app",
        &[("default_channel", s("stable"))],
    )
    .await;
    put(
        &client,
        &store,
        app,
        "release#production#all",
        &release("1.0.3", &[]),
    )
    .await;
    put(
        &client,
        &store,
        app,
        "release#stable#android",
        &release("1.0.1", &[]),
    )
    .await;

    let snap = load(&store, app).await;
    assert_eq!(snap.default_channel, "stable");
    assert_eq!(
        answer(&check(app, "android", "1.0.0", "builtin", ""), Some(&snap)),
        "offer stable 1.0.1"
    );
    // The default channel serves no iOS item and has no `all`: no silent fallback to production.
    assert!(
        answer(&check(app, "ios", "1.0.0", "builtin", ""), Some(&snap)).starts_with("no_channel ")
    );

    // An app item alone is an app with no release for anyone, not an unknown app.
    let lonely = "com.example.lonely";
    put(
        &client,
        &store,
        lonely,
        "app",
        &[("default_channel", s("stable"))],
    )
    .await;
    let snap = load(&store, lonely).await;
    assert!(
        answer(
            &check(lonely, "android", "1.0.0", "builtin", ""),
            Some(&snap)
        )
        .starts_with("no_channel ")
    );
}

#[tokio::test]
async fn policy_gates_builtin_and_encryption() {
    let (client, store) = fresh().await;
    let major = "com.example.major";
    put(
        &client,
        &store,
        major,
        "release#production#all",
        &release("2.0.0", &[]),
    )
    .await;
    let paused = "com.example.paused";
    put(
        &client,
        &store,
        paused,
        "release#production#all",
        &release("1.0.3", &[("paused", b(true))]),
    )
    .await;
    let open = "com.example.open";
    put(
        &client,
        &store,
        open,
        "release#production#all",
        &release(
            "2.0.0",
            &[
                ("disable_auto_update", s("none")),
                ("allow_emulator", b(false)),
            ],
        ),
    )
    .await;
    let reset = "com.example.reset";
    put(
        &client,
        &store,
        reset,
        "release#production#all",
        &[("version", s("builtin"))],
    )
    .await;

    let a = |app: &'static str, snap: AppSnapshot, build: &'static str, name: &'static str| {
        answer(&check(app, "android", build, name, ""), Some(&snap))
    };
    assert!(
        a(major, load(&store, major).await, "1.0.0", "builtin")
            .starts_with("disable_auto_update_to_major ")
    );
    assert_eq!(
        a(major, load(&store, major).await, "2.0.0", "1.9.0"),
        "offer production 2.0.0"
    );
    assert!(
        a(paused, load(&store, paused).await, "1.0.0", "builtin").starts_with("release_paused ")
    );
    assert_eq!(
        a(open, load(&store, open).await, "1.0.0", "builtin"),
        "offer production 2.0.0"
    );
    let emulator_body = check(open, "android", "1.0.0", "builtin", "")
        .replace(r#""is_emulator":false"#, r#""is_emulator":true"#);
    assert!(
        answer(&emulator_body, Some(&load(&store, open).await)).starts_with("disable_emulator ")
    );
    assert_eq!(
        a(reset, load(&store, reset).await, "1.0.0", "1.0.2"),
        "reset production"
    );
    assert!(
        a(reset, load(&store, reset).await, "1.0.0", "builtin").starts_with("already_on_builtin ")
    );

    // Encrypted bundles: checksum and session key pass through untouched.
    let enc = "com.example.enc";
    let checksum = "ab".repeat(256);
    put(
        &client,
        &store,
        enc,
        "release#production#all",
        &[
            ("version", s("1.0.3")),
            ("bundle", s("com.example.enc/1.0.3/x.zip")),
            ("checksum", s(&checksum)),
            ("session_key", s("aXY=:a2V5")),
            ("key_id", s("MIIBCgKCAQEA3it9ioh6")),
            ("link", s("https://example.com/notes")),
        ],
    )
    .await;
    let snap = load(&store, enc).await;
    // The device's key_id is the start of its public key, as the plugin sends it.
    let body = check(enc, "android", "1.0.0", "builtin", "").replace(
        r#""custom_id":"""#,
        r#""custom_id":"","key_id":"MIIBCgKCAQEA3it9ioh6""#,
    );
    let req = parse_update_request(body.as_bytes()).unwrap();
    match decide_update(&req, Some(&snap), None) {
        Decision::Offer { release, .. } => {
            assert_eq!(release.checksum.as_deref(), Some(checksum.as_str()));
            assert_eq!(release.session_key.as_deref(), Some("aXY=:a2V5"));
            assert_eq!(release.key_id.as_deref(), Some("MIIBCgKCAQEA3it9ioh6"));
            assert_eq!(release.link.as_deref(), Some("https://example.com/notes"));
        }
        other => panic!("expected an offer, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_items_are_refused_by_name() {
    let (client, store) = fresh().await;
    let cases: [(&str, Attrs, &str); 6] = [
        ("com.example.semver", release("1.0", &[]), "version"),
        (
            "com.example.pauseds",
            release("1.0.3", &[("paused", s("true"))]),
            "paused",
        ),
        (
            "com.example.pausedl",
            release("1.0.3", &[("paused", AttributeValue::L(vec![b(true)]))]),
            "paused",
        ),
        (
            "com.example.null",
            release("1.0.3", &[("allow_prod", AttributeValue::Null(true))]),
            "allow_prod",
        ),
        (
            "com.example.map",
            release("1.0.3", &[("link", AttributeValue::M(HashMap::new()))]),
            "link",
        ),
        (
            "com.example.num",
            release("1.0.3", &[("checksum", AttributeValue::N("5".into()))]),
            "checksum",
        ),
    ];
    for (app, attrs, _) in &cases {
        put(&client, &store, app, "release#production#all", attrs).await;
    }
    for (app, _, attr) in &cases {
        let snap = load(&store, app).await;
        let release = snap
            .release("production", updraft::domain::protocol::Platform::Android)
            .unwrap();
        let why = release.as_ref().expect_err("malformed item").to_string();
        assert!(why.contains(attr), "{app}: {why:?} should name {attr}");
        let got = answer(&check(app, "android", "1.0.0", "builtin", ""), Some(&snap));
        assert!(got.starts_with("invalid_release "), "{app}: {got}");
    }
    // A release sort key with an unknown platform is reported, not served.
    let app = "com.example.windows";
    put(
        &client,
        &store,
        app,
        "release#production#windows",
        &release("1.0.3", &[]),
    )
    .await;
    let snap = load(&store, app).await;
    assert_eq!(snap.problems.len(), 1, "{:?}", snap.problems);
}

#[tokio::test]
async fn unknown_apps_have_no_snapshot() {
    let (client, store) = fresh().await;
    assert!(
        store
            .load_app("com.example.nobody")
            .await
            .unwrap()
            .is_none()
    );
    // Bundle items alone are not releases.
    put(
        &client,
        &store,
        "com.example.bundles",
        "bundle#1.0.0",
        &[("sha256", s(SUM))],
    )
    .await;
    assert!(
        store
            .load_app("com.example.bundles")
            .await
            .unwrap()
            .is_none()
    );
    let body = check("com.example.nobody", "android", "1.0.0", "builtin", "");
    assert!(answer(&body, None).starts_with("app_not_found "));
}

#[tokio::test]
async fn a_large_partition_is_read_across_pages() {
    let (client, store) = fresh().await;
    let app = "com.example.big";
    // ~1.2 MB of bundle items sorts before the release items, so the release is on a later page.
    let filler = "x".repeat(100_000);
    for i in 0..12 {
        put(
            &client,
            &store,
            app,
            &format!("bundle#1.0.{i}"),
            &[("notes", s(&filler))],
        )
        .await;
    }
    put(
        &client,
        &store,
        app,
        "release#production#all",
        &release("1.0.3", &[]),
    )
    .await;
    // The emulator pages like DynamoDB: one request does not reach the release item.
    let first_page = client
        .query()
        .table_name(store.table())
        .key_condition_expression("app_id = :a")
        .expression_attribute_values(":a", s(app))
        .send()
        .await
        .unwrap();
    assert!(
        first_page.last_evaluated_key.is_some(),
        "no second page to follow"
    );
    let snap = load(&store, app).await;
    assert_eq!(
        answer(&check(app, "android", "1.0.0", "builtin", ""), Some(&snap)),
        "offer production 1.0.3"
    );
}

#[tokio::test]
async fn item_writer_round_trips_and_puts_once() {
    let (client, store) = fresh().await;
    let app = "com.example.writer";
    let mut item = Item::new();
    item.insert("version".into(), AttrValue::S("1.0.3".into()));
    item.insert("bundle".into(), AttrValue::S("k.zip".into()));
    item.insert("checksum".into(), AttrValue::S(SUM.into()));
    item.insert("allow_self_assign".into(), AttrValue::Bool(true));
    item.insert("released_at".into(), AttrValue::N(1_760_000_000u64.into()));

    assert_eq!(
        store.get_item(app, "release#production#all").await.unwrap(),
        None
    );
    store
        .put_item(app, "release#production#all", &item)
        .await
        .unwrap();
    assert_eq!(
        store.get_item(app, "release#production#all").await.unwrap(),
        Some(item.clone())
    );

    // Stored with the types an operator would write by hand.
    let raw = client
        .get_item()
        .table_name(store.table())
        .key("app_id", s(app))
        .key("sk", s("release#production#all"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw["allow_self_assign"], b(true));
    assert_eq!(raw["released_at"], AttributeValue::N("1760000000".into()));
    assert_eq!(raw["version"], s("1.0.3"));

    let snap = load(&store, app).await;
    assert_eq!(
        answer(&check(app, "ios", "1.0.0", "builtin", ""), Some(&snap)),
        "offer production 1.0.3"
    );

    // The conditional put writes once; the second writer learns it lost.
    let first: Item = [("sha256".to_string(), AttrValue::S("aa".into()))].into();
    let second: Item = [("sha256".to_string(), AttrValue::S("bb".into()))].into();
    assert!(
        store
            .put_item_if_absent(app, "bundle#1.0.3", &first)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_item_if_absent(app, "bundle#1.0.3", &second)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_item(app, "bundle#1.0.3").await.unwrap(),
        Some(first)
    );

    // A value that exists only when read cannot be written back.
    let mut odd = Item::new();
    odd.insert("tags".into(), AttrValue::Unsupported("L".into()));
    assert!(matches!(
        store.put_item(app, "bundle#9.9.9", &odd).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn create_table_is_idempotent_and_checks_keys() {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let client = dynamo_client(&conf);
    let table = unique("updraft-init");
    assert!(create_table(&client, &table).await.unwrap());
    assert!(
        !create_table(&client, &table).await.unwrap(),
        "second run finds the table"
    );

    let wrong = unique("updraft-wrong");
    client
        .create_table()
        .table_name(&wrong)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let err = create_table(&client, &wrong).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("app_id"), "{err}");
}

#[tokio::test]
async fn a_missing_table_is_unavailable() {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::SERVING).await;
    let store = DynamoStore::new(dynamo_client(&conf), unique("updraft-absent"));
    let err = store.load_app("com.example.app").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
}

#[tokio::test]
async fn a_closed_endpoint_fails_fast() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let conf = config_for(&endpoint, AwsTimeouts::SERVING).await;
    let store = DynamoStore::new(dynamo_client(&conf), "updraft");
    let started = Instant::now();
    let err = store.load_app("com.example.app").await.unwrap_err();
    assert_fast("closed DynamoDB endpoint", started.elapsed(), FAULT_BOUND);
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn a_hanging_endpoint_fails_fast() {
    let conf = config_for(&hanging_endpoint().await, AwsTimeouts::SERVING).await;
    let store = DynamoStore::new(dynamo_client(&conf), "updraft");
    let started = Instant::now();
    let err = store.load_app("com.example.app").await.unwrap_err();
    let elapsed = started.elapsed();
    assert_fast("hanging DynamoDB endpoint", elapsed, FAULT_BOUND);
    // It did wait for the attempts: the bound comes from the timeouts, not a refused connection.
    assert!(elapsed >= AwsTimeouts::SERVING.attempt, "{elapsed:?}");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn throttling_is_retried_once_then_fails_fast() {
    let (endpoint, requests) = support::aws::throttling_endpoint().await;
    let conf = config_for(&endpoint, AwsTimeouts::SERVING).await;
    let store = DynamoStore::new(dynamo_client(&conf), "updraft");
    let started = Instant::now();
    let err = store.load_app("com.example.app").await.unwrap_err();
    assert_fast("throttled DynamoDB", started.elapsed(), FAULT_BOUND);
    assert!(err.to_string().contains("Throttling"), "{err}");
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        AwsTimeouts::SERVING.max_attempts as usize
    );
}
