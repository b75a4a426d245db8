//! `S3Bundles` against s3s-fs (`UPDRAFT_TEST_S3S`), which checks SigV4 presigned URLs and
//! their expiry like S3 does, so a URL that downloads here is one S3 would honour. Also a
//! round trip on moto (`UPDRAFT_TEST_MOTO`), and `updraft release`'s publish path end to end.

mod support;

use std::time::{Duration, Instant};

use rand::RngCore;
use support::aws::{assert_fast, closed_port, config_for, emulator, unique};
use updraft::bundles::s3::{MULTIPART_THRESHOLD, S3Bundles};
use updraft::bundles::{BundleError, BundleStore, UrlSigner, sha256_hex};
use updraft::runtime::aws::{AwsTimeouts, dynamo_client, s3_client};

/// A bucket of its own on the emulator at `var`, and bundles in it.
async fn fresh(var: &str, ttl: Duration) -> S3Bundles {
    let conf = config_for(&emulator(var), AwsTimeouts::OPERATOR).await;
    let client = s3_client(&conf);
    let bucket = unique("updraft-test");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    S3Bundles::new(client, bucket, ttl).quiet(true)
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A device's download: status and body.
async fn download(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("GET the bundle URL");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn uploads_verify_and_presigned_urls_download() {
    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(3600)).await;
    let bytes = random_bytes(200_000);
    let sum = sha256_hex(&bytes);
    let key = format!("com.example.app/1.0.3/{sum}.zip");
    bundles.put_verified(&key, &bytes, &sum).await.unwrap();

    let head = bundles
        .client()
        .head_object()
        .bucket(bundles.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/zip"));

    let url = bundles.download_url(&key, "http://ignored").await.unwrap();
    assert!(url.starts_with(&format!(
        "{}/{}/{key}?",
        emulator("UPDRAFT_TEST_S3S"),
        bundles.bucket()
    )));
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");
    let (status, body) = download(&url).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sum);
}

#[tokio::test]
async fn tampered_urls_are_refused() {
    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(3600)).await;
    for name in ["a", "b"] {
        let bytes = name.repeat(1000).into_bytes();
        let key = format!("com.example.app/1.0.0/{name}.zip");
        bundles
            .put_verified(&key, &bytes, &sha256_hex(&bytes))
            .await
            .unwrap();
    }
    let url = bundles
        .download_url("com.example.app/1.0.0/a.zip", "")
        .await
        .unwrap();
    assert_eq!(download(&url).await.0, 200);

    // Another key with a's signature.
    let other_key = url.replace("/a.zip?", "/b.zip?");
    assert_ne!(other_key, url);
    assert_eq!(download(&other_key).await.0, 403);

    // A changed signature.
    let (rest, signature) = url.split_once("X-Amz-Signature=").unwrap();
    let signature = &signature[..64];
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    let forged = format!("{rest}X-Amz-Signature={flipped}{}", &signature[1..]);
    assert_eq!(download(&forged).await.0, 403);

    // A longer lifetime than was signed.
    let longer = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200");
    assert_ne!(longer, url);
    assert_eq!(download(&longer).await.0, 403);

    // No signature at all.
    let plain = url.split_once('?').unwrap().0;
    assert_eq!(download(plain).await.0, 403);
}

#[tokio::test]
async fn urls_expire() {
    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(1)).await;
    let bytes = b"expiring".to_vec();
    let key = "com.example.app/1.0.0/e.zip";
    bundles
        .put_verified(key, &bytes, &sha256_hex(&bytes))
        .await
        .unwrap();
    let url = bundles.download_url(key, "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = download(&url).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn large_bundles_go_up_in_parts() {
    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(600)).await;
    let bytes = random_bytes(MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17);
    let sum = sha256_hex(&bytes);
    let key = format!("com.example.app/2.0.0/{sum}.zip");
    bundles.put_verified(&key, &bytes, &sum).await.unwrap();

    // A multipart object's ETag says how many parts it has: "<md5>-3".
    let head = bundles
        .client()
        .head_object()
        .bucket(bundles.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(bytes.len() as i64));
    assert!(
        head.e_tag()
            .is_some_and(|e| e.trim_matches('"').ends_with("-3")),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(head.content_type(), Some("application/zip"));

    let (status, body) = download(&bundles.download_url(&key, "").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sum);
}

#[tokio::test]
async fn a_wrong_checksum_is_a_mismatch() {
    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(60)).await;
    let bytes = b"zip".to_vec();
    let err = bundles
        .put_verified("com.example.app/1.0.0/m.zip", &bytes, &"0".repeat(64))
        .await
        .unwrap_err();
    assert!(matches!(err, BundleError::Mismatch { .. }), "{err}");
    assert!(matches!(
        bundles
            .put_verified("../evil.zip", &bytes, &sha256_hex(&bytes))
            .await,
        Err(BundleError::InvalidKey(_))
    ));
    assert!(matches!(
        bundles.download_url("a/../b.zip", "").await,
        Err(BundleError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn a_missing_bucket_is_unavailable() {
    // On moto: s3s-fs creates a missing bucket's folder for multipart uploads.
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::OPERATOR).await;
    let missing = S3Bundles::new(
        s3_client(&conf),
        unique("updraft-absent"),
        Duration::from_secs(60),
    )
    .quiet(true);
    for len in [1000, MULTIPART_THRESHOLD] {
        let bytes = random_bytes(len);
        let err = missing
            .put_verified("com.example.app/1.0.0/x.zip", &bytes, &sha256_hex(&bytes))
            .await
            .unwrap_err();
        assert!(matches!(err, BundleError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    }
}

#[tokio::test]
async fn a_failed_part_aborts_the_upload() {
    let moto = emulator("UPDRAFT_TEST_MOTO");
    let direct = fresh("UPDRAFT_TEST_MOTO", Duration::from_secs(60)).await;
    let (proxy, refused) = support::aws::part_failing_proxy(&moto).await;
    let conf = config_for(&proxy, AwsTimeouts::OPERATOR).await;
    let through_proxy =
        S3Bundles::new(s3_client(&conf), direct.bucket(), Duration::from_secs(60)).quiet(true);

    let bytes = random_bytes(MULTIPART_THRESHOLD + 1);
    let key = "com.example.app/3.0.0/x.zip";
    let err = through_proxy
        .put_verified(key, &bytes, &sha256_hex(&bytes))
        .await
        .unwrap_err();
    assert!(matches!(err, BundleError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("UploadPart"), "{err}");
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // Nothing is left behind: no object, no upload still holding parts.
    let uploads = direct
        .client()
        .list_multipart_uploads()
        .bucket(direct.bucket())
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let head = direct
        .client()
        .head_object()
        .bucket(direct.bucket())
        .key(key)
        .send()
        .await;
    assert!(head.is_err(), "{head:?}");
}

#[tokio::test]
async fn moto_round_trip() {
    let bundles = fresh("UPDRAFT_TEST_MOTO", Duration::from_secs(3600)).await;
    let bytes = random_bytes(50_000);
    let sum = sha256_hex(&bytes);
    let key = format!("com.example.app/1.0.3/{sum}.zip");
    bundles.put_verified(&key, &bytes, &sum).await.unwrap();
    let (status, body) = download(&bundles.download_url(&key, "").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sum);
}

#[tokio::test]
async fn a_closed_endpoint_fails_fast() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let conf = config_for(&endpoint, AwsTimeouts::SERVING).await;
    let bundles = S3Bundles::new(s3_client(&conf), "updraft", Duration::from_secs(60)).quiet(true);
    let started = Instant::now();
    let err = bundles
        .put_verified("com.example.app/1.0.0/x.zip", b"zip", &sha256_hex(b"zip"))
        .await
        .unwrap_err();
    assert_fast(
        "closed S3 endpoint",
        started.elapsed(),
        Duration::from_secs(6),
    );
    assert!(matches!(err, BundleError::Unavailable(_)), "{err}");
    // Signing needs no network: devices still get URLs while S3 is briefly unreachable.
    assert!(
        bundles
            .download_url("com.example.app/1.0.0/x.zip", "")
            .await
            .is_ok()
    );
}

/// `updraft release` on AWS: object and items written, then an update check serves a URL that
/// downloads exactly the zip that was released.
#[tokio::test]
async fn publish_then_serve_end_to_end() {
    use std::sync::Arc;
    use updraft::domain::decide::{Decision, decide_update};
    use updraft::domain::item::Item;
    use updraft::domain::keys::Target;
    use updraft::ops::OperatorStores;
    use updraft::ops::publish::{BundleSource, ReleaseSpec, publish};
    use updraft::store::ReleaseStore;
    use updraft::store::dynamo::releases::DynamoStore;
    use updraft::store::dynamo::stats::DynamoStats;
    use updraft::store::dynamo::tables::create_table;

    let bundles = fresh("UPDRAFT_TEST_S3S", Duration::from_secs(600)).await;
    let moto = config_for(&emulator("UPDRAFT_TEST_MOTO"), AwsTimeouts::OPERATOR).await;
    let table = unique("updraft-e2e");
    create_table(&dynamo_client(&moto), &table).await.unwrap();
    let store = Arc::new(DynamoStore::new(dynamo_client(&moto), table.clone()));
    let stats = Arc::new(DynamoStats::new(dynamo_client(&moto), table, "unused", 60));
    let ops = OperatorStores {
        releases: store.clone(),
        items: store.clone(),
        query: store.clone(),
        history: store.clone(),
        devices: Arc::new(updraft::store::dynamo::devices::DynamoDevices::new(
            dynamo_client(&moto),
            "unused-releases",
            "unused-devices",
            60,
        )),
        stats: stats.clone(),
        evidence: stats,
        bundles: Some(Arc::new(bundles.clone())),
        identity: Arc::new(updraft::runtime::identity::LocalUser),
        clock: updraft::clock::system(),
    };

    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<html><script>CapacitorUpdater.notifyAppReady()</script></html>",
    )
    .unwrap();
    let spec = ReleaseSpec {
        app_id: "com.example.app".into(),
        version: "1.0.3".into(),
        channel: "production".into(),
        target: Target::All,
        source: BundleSource::Dir(web.path().to_path_buf()),
        checksum: None,
        encryption: None,
        policy: Item::new(),
        code_check: false,
        expect_revision: None,
        delta: None,
        rollout: None,
    };
    let published = publish(&ops, spec.clone()).await.unwrap();
    assert!(!published.reused_bundle);
    // Releasing the same bytes again reuses the object.
    assert!(publish(&ops, spec).await.unwrap().reused_bundle);

    let snap = store.load_app("com.example.app").await.unwrap().unwrap();
    let body = r#"{"platform":"ios","device_id":"6a1f0b3e-1111-4222-8333-9c2d00000000",
        "app_id":"com.example.app","version_build":"1.0.0","version_name":"builtin",
        "is_emulator":false,"is_prod":true}"#;
    let req = updraft::domain::protocol::parse_update_request(body.as_bytes()).unwrap();
    let Decision::Offer { release, .. } = decide_update(&req, Some(&snap), None) else {
        panic!("expected an offer");
    };
    let url = bundles
        .download_url(release.bundle.as_deref().unwrap(), "")
        .await
        .unwrap();
    let (status, zip) = download(&url).await;
    assert_eq!(status, 200);
    assert_eq!(Some(sha256_hex(&zip)), release.checksum);
    assert_eq!(published.checksum, release.checksum);
}

/// Runs `env_child` in a child process with `vars`: the standard AWS variables are read once per
/// process, and setting them here would leak into tests running in parallel threads.
fn run_child(vars: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["env_child", "--exact", "--ignored", "--nocapture"])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("UPDRAFT_TABLE", unique("updraft-env"))
        .env("UPDRAFT_BUCKET", unique("updraft-env"))
        .env("UPDRAFT_URL_TTL", "120");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child test");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn service_endpoint_variables_are_honoured() {
    run_child(&[
        ("UPDRAFT_CHILD_S3", emulator("UPDRAFT_TEST_S3S")),
        ("AWS_ENDPOINT_URL_S3", emulator("UPDRAFT_TEST_S3S")),
        ("AWS_ENDPOINT_URL_DYNAMODB", emulator("UPDRAFT_TEST_MOTO")),
    ]);
}

#[tokio::test]
async fn the_global_endpoint_variable_is_honoured() {
    // moto serves DynamoDB and S3 on one port.
    run_child(&[
        ("UPDRAFT_CHILD_S3", emulator("UPDRAFT_TEST_MOTO")),
        ("AWS_ENDPOINT_URL", emulator("UPDRAFT_TEST_MOTO")),
    ]);
}

/// The stores as Lambda builds them: from the environment alone.
#[tokio::test]
#[ignore = "run in a child process by the *_honoured tests, with its own environment"]
async fn env_child() {
    use updraft::store::ReleaseStore;
    use updraft::store::dynamo::releases::DynamoStore;
    use updraft::store::dynamo::tables::create_table;

    let Ok(s3_endpoint) = std::env::var("UPDRAFT_CHILD_S3") else {
        eprintln!("env_child only runs inside service_endpoint_variables_are_honoured");
        return;
    };
    let conf = updraft::runtime::aws::sdk_config(AwsTimeouts::SERVING).await;
    assert!(updraft::runtime::aws::has_custom_s3_endpoint(&conf));

    let table = std::env::var("UPDRAFT_TABLE").unwrap();
    let store = DynamoStore::new(updraft::runtime::aws::dynamo_client(&conf), table);
    assert!(create_table(store.client(), store.table()).await.unwrap());
    assert!(store.load_app("com.example.app").await.unwrap().is_none());

    // The bucket and URL lifetime as the Lambda reads them (`UPDRAFT_BUCKET`, `UPDRAFT_URL_TTL`).
    let bundles = S3Bundles::new(
        updraft::runtime::aws::s3_client(&conf),
        std::env::var("UPDRAFT_BUCKET").unwrap(),
        updraft::runtime::aws::url_ttl_from_env().unwrap(),
    )
    .quiet(true);
    bundles
        .client()
        .create_bucket()
        .bucket(bundles.bucket())
        .send()
        .await
        .unwrap();
    let bytes = random_bytes(1000);
    let key = "com.example.app/1.0.0/env.zip";
    bundles
        .put_verified(key, &bytes, &sha256_hex(&bytes))
        .await
        .unwrap();
    let url = bundles.download_url(key, "").await.unwrap();
    assert!(
        url.starts_with(&format!("{s3_endpoint}/{}/{key}?", bundles.bucket())),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=120"), "{url}");
    let (status, body) = download(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
}
