//! The Lambda path through a real Lambda Runtime API emulator (`cargo lambda watch
//! --only-lambda-apis`): the built `updraft` binary polls it as it polls AWS, API Gateway v2
//! events kept in tests/fixtures/events are invoked, and the answers must equal what
//! `updraft serve` gives for the same request on the same DynamoDB and S3.

#[path = "common/aws.rs"]
mod aws_common;
mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_common::{binary_env, pairs};
use support::*;

/// A child process group, killed whole when dropped (cargo-lambda spawns helpers).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The URL without its query: presigned signatures differ by the second they were made.
fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap()
}

#[tokio::test]
async fn lambda_answers_equal_the_local_server() {
    let env = binary_env().await;
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    write_web_dir(&web, "lambda 1.0.1");
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What the local server answers for the fixture's request.
    let event = fixture("update-check.json");
    let body = event["body"].as_str().unwrap().to_owned();
    let server = Server::start(&[], &pairs(&env));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let local: serde_json::Value = client
        .post(server.url("/updates"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(local["version"], "1.0.1", "{local}");

    // The Runtime API emulator, then the binary as Lambda runs it.
    let port = free_port();
    let emulator = Command::new("cargo")
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cargo lambda is not installed: run scripts/test.sh (or scripts/setup.sh)");
    let _emulator = Group(emulator);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Lambda runtime emulator did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let function = updraft()
        .envs(pairs(&env))
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("UPDRAFT_CACHE_TTL", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let _function = Group(function);

    let invoke = |event: serde_json::Value| {
        let client = client.clone();
        async move {
            let res = client
                .post(format!(
                    "http://127.0.0.1:{port}/2015-03-31/functions/_/invocations"
                ))
                .json(&event)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "the emulator's invoke call");
            res.json::<serde_json::Value>().await.unwrap()
        }
    };

    // `$default` stage, and a named stage (whose name API Gateway puts in the path).
    for name in ["update-check.json", "update-check-stage.json"] {
        let response = invoke(fixture(name)).await;
        eprintln!("{name}: answered after {:?} from exec", started.elapsed());
        assert_eq!(response["statusCode"], 200, "{name}: {response}");
        assert_eq!(response["headers"]["content-type"], "application/json");
        let answer: serde_json::Value =
            serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        let mut keys: Vec<_> = answer.as_object().unwrap().keys().collect();
        let mut local_keys: Vec<_> = local.as_object().unwrap().keys().collect();
        keys.sort();
        local_keys.sort();
        assert_eq!(keys, local_keys, "{name}: same fields");
        assert_eq!(answer["version"], local["version"]);
        assert_eq!(answer["checksum"], local["checksum"]);
        let (url, local_url) = (
            answer["url"].as_str().unwrap(),
            local["url"].as_str().unwrap(),
        );
        assert_eq!(
            without_query(url),
            without_query(local_url),
            "{name}: the same object"
        );
        let zip = client.get(url).send().await.unwrap();
        assert_eq!(
            zip.status(),
            200,
            "{name}: the Lambda's presigned URL downloads"
        );
        assert_eq!(
            sha256_hex(&zip.bytes().await.unwrap()),
            answer["checksum"].as_str().unwrap()
        );
    }

    // Bad input through Lambda: the same JSON 400 as locally.
    let mut bad = fixture("update-check.json");
    bad["body"] = serde_json::Value::from("{}");
    let response = invoke(bad).await;
    assert_eq!(response["statusCode"], 400);
    let answer: serde_json::Value =
        serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["error"], "missing_device_id");
}
