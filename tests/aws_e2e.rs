//! The real binary on the AWS backend, against emulators that speak the AWS wire protocol:
//! DynamoDB on moto (`UPDRAFT_TEST_MOTO`), S3 on s3s-fs (`UPDRAFT_TEST_S3S`, which verifies
//! presigned signatures and expiry). `updraft release --backend aws` then
//! `updraft serve --backend aws`, and the faults a device must survive.

mod support;

use std::time::{Duration, Instant};

use support::aws::{binary_env, closed_port, emulator, hanging_endpoint, pairs};
use support::*;

#[tokio::test]
async fn release_then_serve_on_aws_emulators() {
    let env = binary_env().await;
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    write_web_dir(&web, "aws 1.0.1");

    let out = updraft()
        .args([
            "release",
            "--app",
            APP_ID,
            "--version",
            "1.0.1",
            "--dir",
            web.to_str().unwrap(),
            "--json",
        ])
        .envs(pairs(&env))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let released: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = released["bundle"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let mut env_serve = pairs(&env);
    env_serve.push(("UPDRAFT_CACHE_TTL", "0"));
    let mut server = Server::start(&[], &env_serve);
    let res = support::client()
        .post(server.url("/updates"))
        .json(&plugin_body(APP_ID, "1.0.0", "builtin"))
        .send()
        .await
        .unwrap();
    eprintln!(
        "exec to first answer (aws backend on emulators): {:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), 200);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["version"], "1.0.1", "{answer}");
    assert_eq!(answer["checksum"], released["checksum"]);
    let url = answer["url"].as_str().unwrap();
    let s3s = emulator("UPDRAFT_TEST_S3S");
    assert!(
        url.starts_with(&s3s) && url.contains(&key),
        "a path-style presigned URL on the emulator: {url}"
    );
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");

    // The presigned URL really downloads, and it is what the plugin verifies.
    let zip = support::client().get(url).send().await.unwrap();
    assert_eq!(zip.status(), 200);
    let zip = zip.bytes().await.unwrap();
    assert_eq!(sha256_hex(&zip), answer["checksum"].as_str().unwrap());
    assert!(zip_names(&zip).contains(&"index.html".to_owned()));
    // Same length, one hex digit changed: a well-formed signature that does not match.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    assert_eq!(
        support::client()
            .get(&tampered)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // Re-releasing 1.0.1 with other bytes is refused by the conditional write.
    write_web_dir(&web, "aws other bytes");
    let out = updraft()
        .args([
            "release",
            "--app",
            APP_ID,
            "--version",
            "1.0.1",
            "--dir",
            web.to_str().unwrap(),
        ])
        .envs(pairs(&env))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("different bytes"));
    let again: serde_json::Value = support::client()
        .post(server.url("/updates"))
        .json(&plugin_body(APP_ID, "1.0.0", "builtin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["checksum"], answer["checksum"],
        "the refused release changed nothing"
    );
    assert!(server.alive());
}

/// The DynamoDB endpoint is closed, or accepts and never answers: devices get a JSON
/// `failed` answer (HTTP 503) within a bound, and the process keeps serving.
#[tokio::test]
async fn unreachable_dynamodb_gives_a_failed_answer_in_bounded_time() {
    let hanging = hanging_endpoint().await;
    let closed = format!("http://127.0.0.1:{}", closed_port());
    for (what, endpoint, bound) in [
        ("closed", closed, Duration::from_secs(3)),
        ("hanging", hanging, Duration::from_secs(6)),
    ] {
        let env: Vec<(&str, &str)> = vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("UPDRAFT_TABLE", "releases"),
            ("UPDRAFT_DEVICES_TABLE", "devices"),
            ("UPDRAFT_BUCKET", "bundles"),
        ];
        let mut server = Server::start(&["--backend", "aws", "--cache-ttl", "0"], &env);
        for _ in 0..2 {
            let started = Instant::now();
            let res = support::client()
                .post(server.url("/updates"))
                .json(&plugin_body(APP_ID, "1.0.0", "builtin"))
                .send()
                .await
                .unwrap();
            let elapsed = started.elapsed();
            eprintln!(
                "{what} DynamoDB: answered {} after {elapsed:?}",
                res.status()
            );
            assert_eq!(res.status(), 503);
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["error"], "service_unavailable");
            assert_eq!(body["kind"], "failed");
            assert!(
                !body["message"].as_str().unwrap().contains("127.0.0.1"),
                "no internals: {body}"
            );
            assert!(elapsed < bound, "{what}: {elapsed:?} over {bound:?}");
        }
        let health = support::client()
            .get(server.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert!(server.alive());
    }
}
