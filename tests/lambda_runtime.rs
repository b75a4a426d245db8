//! The Lambda path through a real Lambda Runtime API emulator (`cargo lambda watch
//! --only-lambda-apis`): the built `updraft` binary polls it as it polls AWS, API Gateway v2
//! events kept in tests/fixtures/events are invoked, and the answers must equal what
//! `updraft serve` gives for the same request on the same DynamoDB and S3.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::aws::{binary_env, pairs};
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

/// The Runtime API emulator, and the built binary polling it as Lambda runs it.
struct Lambda {
    port: u16,
    client: reqwest::Client,
    _emulator: Group,
    _function: Group,
}

impl Lambda {
    async fn start(env: &[(String, String)]) -> Lambda {
        Self::start_with(env, Stdio::null(), Stdio::inherit()).await
    }

    /// `start`, with the function's stdout and stderr where the caller wants them.
    async fn start_with(env: &[(String, String)], stdout: Stdio, stderr: Stdio) -> Lambda {
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
        let emulator = Group(emulator);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Lambda runtime emulator did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let function = updraft()
            // The template's cache TTL, unless the test's environment names another.
            .env("UPDRAFT_CACHE_TTL", "10")
            .envs(pairs(env))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap();
        Lambda {
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _emulator: emulator,
            _function: Group(function),
        }
    }

    /// Invokes the function with an event; its answer (an API Gateway v2 response).
    async fn invoke(&self, event: serde_json::Value) -> serde_json::Value {
        let res = self
            .client
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the emulator's invoke call");
        res.json::<serde_json::Value>().await.unwrap()
    }
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

    let lambda = Lambda::start(&env).await;
    let started = Instant::now();
    let invoke = |event: serde_json::Value| lambda.invoke(event);

    // `$default` stage, and a named stage (whose name API Gateway puts in the path).
    for name in ["update-check.json", "update-check-stage.json"] {
        let response = invoke(fixture(name)).await;
        eprintln!("{name}: answered after {:?} from exec", started.elapsed());
        assert_eq!(response["statusCode"], 200, "{name}: {response}");
        assert_eq!(response["headers"]["content-type"], "application/json");
        let answer: serde_json::Value = body_of(&response).0;
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
    let answer: serde_json::Value = body_of(&response).0;
    assert_eq!(answer["error"], "missing_device_id");
}

/// An API Gateway v2 event for `POST <path>` with `body`, from `source_ip`.
fn v2_event(path: &str, body: &serde_json::Value, source_ip: &str) -> serde_json::Value {
    let mut event = fixture("update-check.json");
    event["rawPath"] = path.into();
    event["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["http"]["path"] = path.into();
    event["requestContext"]["http"]["sourceIp"] = source_ip.into();
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    // A forger may write any header; only API Gateway's sourceIp counts.
    event["headers"]["x-forwarded-for"] = "192.0.2.1".into();
    event["body"] = body.to_string().into();
    event
}

/// The JSON body of a function's response, and its size as API Gateway sends it: a gzipped
/// answer (the fixtures accept gzip, as the plugin does) comes base64-encoded.
fn body_of(response: &serde_json::Value) -> (serde_json::Value, usize) {
    use base64::Engine;
    use std::io::Read;
    let text = response["body"].as_str().unwrap();
    if response["isBase64Encoded"] != true {
        return (serde_json::from_str(text).unwrap(), text.len());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    assert_eq!(
        response["headers"]["content-encoding"], "gzip",
        "{response}"
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    (serde_json::from_slice(&plain).unwrap(), bytes.len())
}

fn answer_of(response: &serde_json::Value) -> serde_json::Value {
    assert_eq!(response["statusCode"], 200, "{response}");
    body_of(response).0
}

const FORGED_APP: &str = "com.example.forged";

fn stats_event(device: &str, action: &str) -> serde_json::Value {
    let mut e = plugin_body(APP_ID, "1.0.0", "1.0.1");
    e["device_id"] = device.into();
    e["action"] = action.into();
    e["old_version_name"] = "".into();
    e["timestamp"] = 1_795_910_400_000u64.into();
    e
}

#[tokio::test]
async fn lambda_pauses_on_evidence_from_api_gateways_source_ip() {
    let env = binary_env().await;
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    write_web_dir(&web, "lambda evidence 1.0.1");
    // The forger's app and the real devices' app, so that the forger's one network is not
    // one of the genuine 30.
    for app in [FORGED_APP, APP_ID] {
        let out = updraft()
            .args(["release", "--app", app, "--version", "1.0.1", "--dir"])
            .arg(&web)
            .envs(pairs(&env))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let value = |name: &str| env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let conf = support::aws::config_for(
        &value("AWS_ENDPOINT_URL_DYNAMODB"),
        updraft::runtime::aws::AwsTimeouts::OPERATOR,
    )
    .await;
    let store = updraft::store::dynamo::releases::DynamoStore::new(
        updraft::runtime::aws::dynamo_client(&conf),
        value("UPDRAFT_TABLE"),
    );
    let paused = |app: &'static str| async {
        use updraft::store::ItemWriter;
        let item = store
            .get_item(app, "release#production#all")
            .await
            .unwrap()
            .unwrap();
        match item.get("paused") {
            Some(updraft::domain::item::AttrValue::Bool(true)) => item
                .get("pause_reason")
                .map(|r| format!("{r:?}"))
                .or(Some(String::new())),
            _ => None,
        }
    };
    let lambda = Lambda::start(&env).await;
    let device = |n: u32| format!("00000000-0000-4000-8000-{n:012}");

    // Forged: 200 made-up devices from one address, as an array and as single objects.
    let forged_event = |n: u32| {
        let mut e = stats_event(&device(n), "update_fail");
        e["app_id"] = FORGED_APP.into();
        e
    };
    let forged: Vec<_> = (0..200).map(|i| forged_event(10_000 + i)).collect();
    let answer = answer_of(
        &lambda
            .invoke(v2_event(
                "/stats",
                &serde_json::Value::Array(forged),
                "198.51.100.7",
            ))
            .await,
    );
    assert_eq!(answer["status"], "ok");
    for i in 0..40 {
        let e = forged_event(20_000 + i);
        answer_of(&lambda.invoke(v2_event("/stats", &e, "198.51.100.8")).await);
    }
    assert_eq!(
        paused(FORGED_APP).await,
        None,
        "one network never pauses a release"
    );

    // Genuine: 30 devices on 30 networks check, download, install and roll back.
    let client = reqwest::Client::new();
    for n in 0..30u32 {
        assert_eq!(paused(APP_ID).await, None, "{n} networks are not enough");
        let source = format!("203.0.{n}.9");
        let mut check = plugin_body(APP_ID, "1.0.0", "builtin");
        check["device_id"] = device(n).into();
        let offer = answer_of(&lambda.invoke(v2_event("/updates", &check, &source)).await);
        assert_eq!(offer["version"], "1.0.1", "{offer}");
        let zip = client
            .get(offer["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(zip.status(), 200);
        assert_eq!(
            sha256_hex(&zip.bytes().await.unwrap()),
            offer["checksum"].as_str().unwrap()
        );
        for action in ["set", "update_fail"] {
            let batch = serde_json::json!([stats_event(&device(n), action)]);
            let answer = answer_of(&lambda.invoke(v2_event("/stats", &batch, &source)).await);
            assert_eq!(answer["accepted"], 1, "{answer}");
        }
    }
    let reason = paused(APP_ID).await.expect("30 networks pause the release");
    assert!(reason.contains("from 30 networks"), "{reason}");
}

/// Delta updates through the Lambda path: a 300-file manifest answer is gzipped (base64 to API
/// Gateway) within 150 bytes per entry, and a file URL answers 302 to a presigned S3 URL that
/// s3s-fs accepts.
#[tokio::test]
async fn lambda_delta_answer_is_short_and_redirects_to_s3() {
    use std::io::Read;
    let mut env = binary_env().await;
    env.push((
        "UPDRAFT_URL_SECRET".into(),
        "0123456789abcdef0123456789abcdef".into(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    write_web_dir(&web, "delta through lambda");
    for i in 0..298 {
        let body: String = (0..40 + i % 60)
            .map(|j| format!("export const v{i}_{j} = {};\n", i * 7919 + j * 104729))
            .collect();
        std::fs::write(web.join(format!("assets/chunk-{i:03}.js")), body).unwrap();
    }
    let out = updraft()
        .args(["release", "--app", APP_ID, "--version", "1.0.1", "--dir"])
        .arg(&web)
        .envs(pairs(&env))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lambda = Lambda::start(&env).await;
    let response = lambda
        .invoke(v2_event(
            "/updates",
            &plugin_body(APP_ID, "1.0.0", "builtin"),
            "198.51.100.7",
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let (answer, wire) = body_of(&response);
    let manifest = answer["manifest"].as_array().expect("a manifest");
    assert_eq!(manifest.len(), 300);
    let per_entry = wire as f64 / 300.0;
    eprintln!("Lambda answer: {wire} bytes gzipped for 300 entries ({per_entry:.1} per entry)");
    assert!(per_entry <= 150.0, "{per_entry}");

    let entry = &manifest[5];
    let url = entry["download_url"].as_str().unwrap();
    let (path, query) = url
        .split_once("amazonaws.com")
        .unwrap()
        .1
        .split_once('?')
        .unwrap();
    let mut event = fixture("update-check.json");
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["routeKey"] = "GET /f/{path+}".into();
    event["requestContext"]["routeKey"] = "GET /f/{path+}".into();
    event["requestContext"]["http"]["method"] = "GET".into();
    event["requestContext"]["http"]["path"] = path.into();
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    event["body"] = serde_json::Value::Null;
    let response = lambda.invoke(event).await;
    assert_eq!(response["statusCode"], 302, "{response}");
    let location = response["headers"]["location"].as_str().unwrap();
    let res = lambda.client.get(location).send().await.unwrap();
    assert_eq!(res.status(), 200, "s3s-fs accepts the presigned URL");
    let body = res.bytes().await.unwrap();
    let name = entry["file_name"].as_str().unwrap();
    let file = if name.ends_with(".br") {
        let mut out = Vec::new();
        brotli::Decompressor::new(&body[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    assert_eq!(sha256_hex(&file), entry["file_hash"].as_str().unwrap());
}

/// The EventBridge schedule of template.yaml: a scheduled event, through the Runtime API, runs
/// one pass of the rollouts' gate on DynamoDB (here: a healthy step 1 % -> 5 %).
#[tokio::test]
async fn lambda_scheduled_event_runs_the_rollout_gate() {
    let env = binary_env().await;
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    for (version, extra) in [
        ("1.0.1", vec![]),
        (
            "1.0.2",
            vec![
                "--rollout",
                "1",
                "--steps",
                "1,5",
                "--step-every",
                "0",
                "--min-devices",
                "5",
                "--max-failure-rate",
                "0.5",
            ],
        ),
    ] {
        write_web_dir(&web, &format!("lambda rollout {version}"));
        let out = updraft()
            .args(["release", "--app", APP_ID, "--version", version, "--dir"])
            .arg(&web)
            .args(extra)
            .envs(pairs(&env))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lambda = Lambda::start(&env).await;
    // Five devices on five networks install the rollout version.
    for n in 0..5u32 {
        let mut e = stats_event(&format!("00000000-0000-4000-8000-{n:012}"), "set");
        e["version_name"] = "1.0.2".into();
        let answer = answer_of(
            &lambda
                .invoke(v2_event("/stats", &e, &format!("198.51.{}.7", 10 + n)))
                .await,
        );
        assert_eq!(answer["status"], "ok", "{answer}");
    }
    let pass = lambda.invoke(scheduled_event()).await;
    let rows = pass["rollouts"]
        .as_array()
        .unwrap_or_else(|| panic!("{pass}"));
    let row = rows.iter().find(|r| r["app_id"] == APP_ID).unwrap();
    assert_eq!(
        (row["action"].as_str(), row["devices"].as_u64()),
        (Some("step"), Some(5)),
        "{pass}"
    );
    let status = updraft()
        .args(["rollout", "status", "--app", APP_ID, "--json"])
        .envs(pairs(&env))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["percent"], 5.0, "{status}");
}

/// An EventBridge scheduled event, as the schedule of template.yaml sends it.
fn scheduled_event() -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-02T05:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/updraft-RolloutTick"],
        "detail": {}
    })
}

/// `updraft release` of `version` (a web folder of its own) on the emulators, with `extra`.
fn release_on(env: &[(String, String)], web: &Path, version: &str, extra: &[&str]) {
    write_web_dir(web, &format!("lambda rollout {version}"));
    let out = updraft()
        .args(["release", "--app", APP_ID, "--version", version, "--dir"])
        .arg(web)
        .args(extra)
        .envs(pairs(env))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `updraft history --json` on the emulators: newest entry first.
fn history_on(env: &[(String, String)]) -> serde_json::Value {
    let out = updraft()
        .args(["history", "--app", APP_ID, "--json"])
        .envs(pairs(env))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rollout_device(i: u32) -> String {
    format!("0b5e0000-0000-4000-8000-{i:012}")
}

/// `action` (`set` or `update_fail`) of rollout version `version`, one `POST /stats` per
/// device, each from the source address `network(i)` as API Gateway reports it.
async fn report_through(
    lambda: &Lambda,
    version: &str,
    devices: std::ops::Range<u32>,
    action: &str,
    network: impl Fn(u32) -> String,
) {
    for i in devices {
        let mut e = stats_event(&rollout_device(i), action);
        e["version_name"] = version.into();
        e["old_version_name"] = "1.0.1".into();
        let answer = answer_of(&lambda.invoke(v2_event("/stats", &e, &network(i))).await);
        assert_eq!(answer["status"], "ok", "{answer}");
    }
}

/// One scheduled pass through the Runtime API: the row of this app.
async fn scheduled_pass(lambda: &Lambda) -> serde_json::Value {
    let pass = lambda.invoke(scheduled_event()).await;
    let rows = pass["rollouts"]
        .as_array()
        .unwrap_or_else(|| panic!("{pass}"));
    rows.iter()
        .find(|r| r["app_id"] == APP_ID)
        .unwrap_or_else(|| panic!("{pass}"))
        .clone()
}

/// What the plugin would do with the Lambda's update answer for `device` running `running`:
/// `Some(version)` to download, `None` to stay.
async fn offered_through(lambda: &Lambda, device: &str, running: &str) -> Option<String> {
    let mut body = plugin_body(APP_ID, "1.0.0", running);
    body["device_id"] = device.into();
    let a = answer_of(
        &lambda
            .invoke(v2_event("/updates", &body, "198.51.100.7"))
            .await,
    );
    match (a.get("url"), a.get("error")) {
        (Some(_), None) => Some(a["version"].as_str().unwrap().to_owned()),
        (None, Some(_)) => None,
        _ => panic!("not an answer the plugin understands: {a}"),
    }
}

/// The whole schedule on DynamoDB, driven as on AWS: stats through API Gateway events, passes
/// by the EventBridge schedule. Healthy installs from enough networks advance 1 -> 5 -> 25 ->
/// 100 % and complete; then every device is offered the new version, and history says who
/// moved it and on what figures.
#[tokio::test]
async fn lambda_schedule_advances_a_healthy_rollout_and_completes() {
    let mut env = binary_env().await;
    // Every check reads the store, so the answer after `complete` is the store's.
    env.push(("UPDRAFT_CACHE_TTL".into(), "0".into()));
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    release_on(&env, &web, "1.0.1", &[]);
    release_on(
        &env,
        &web,
        "1.0.2",
        &[
            "--rollout",
            "1",
            "--steps",
            "1,5,25,100",
            "--step-every",
            "0",
            "--min-devices",
            "40",
            "--max-failure-rate",
            "0.1",
        ],
    );
    let lambda = Lambda::start(&env).await;
    // 60 devices from 12 networks install it; each network counts at most 10 of them.
    report_through(&lambda, "1.0.2", 0..60, "set", |i| {
        format!("10.{}.0.1", i % 12)
    })
    .await;
    let mut steps = vec![];
    for _ in 0..4 {
        let row = scheduled_pass(&lambda).await;
        steps.push((row["percent"].as_f64().unwrap(), row["action"].clone()));
    }
    assert_eq!(
        steps,
        vec![
            (1.0, "step".into()),
            (5.0, "step".into()),
            (25.0, "step".into()),
            (100.0, "complete".into())
        ]
    );
    // Completed: the stable version of the channel, for a device that was never in a cohort.
    assert_eq!(
        offered_through(&lambda, &rollout_device(999), "1.0.1")
            .await
            .as_deref(),
        Some("1.0.2")
    );
    let pass = scheduled_pass_rows(&lambda).await;
    assert!(
        pass.iter().all(|r| r["app_id"] != APP_ID),
        "a completed rollout is no longer driven: {pass:?}"
    );
    let history = history_on(&env);
    let text = history.to_string();
    for step in ["step 1% -> 5%", "step 5% -> 25%", "step 25% -> 100%"] {
        assert!(text.contains(step), "{step}: {history}");
    }
    assert!(text.contains("0 of 60 devices failed"), "{history}");
    assert_eq!(history[0]["action"], "rollout-complete", "{history}");
    assert_eq!(history[0]["who"], "updraft (automatic)", "{history}");
}

async fn scheduled_pass_rows(lambda: &Lambda) -> Vec<serde_json::Value> {
    let pass = lambda.invoke(scheduled_event()).await;
    pass["rollouts"]
        .as_array()
        .unwrap_or_else(|| panic!("{pass}"))
        .clone()
}

/// Failures on DynamoDB: 100 forged failing devices from one network do not halt the rollout
/// (one network counts 10 devices at most); real failures from 30 more networks do, and the
/// rollout is aborted as `--on-failure abort` says, with the step and figures in history.
#[tokio::test]
async fn lambda_schedule_halts_on_failures_from_many_networks_not_from_one() {
    let mut env = binary_env().await;
    env.push(("UPDRAFT_CACHE_TTL".into(), "0".into()));
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    release_on(&env, &web, "1.0.1", &[]);
    release_on(
        &env,
        &web,
        "1.0.2",
        &[
            "--rollout",
            "50",
            "--steps",
            "50,100",
            "--step-every",
            "3600",
            "--on-failure",
            "abort",
        ],
    );
    let lambda = Lambda::start(&env).await;
    report_through(&lambda, "1.0.2", 0..100, "update_fail", |_| {
        "203.0.113.9".into()
    })
    .await;
    let row = scheduled_pass(&lambda).await;
    assert_eq!(row["action"], "hold", "{row}");
    assert_eq!(
        (row["devices"].as_u64(), row["failing_networks"].as_u64()),
        (Some(10), Some(1)),
        "{row}"
    );

    // Real failures: 2 devices on each of 30 networks.
    report_through(&lambda, "1.0.2", 1000..1060, "update_fail", |i| {
        format!("10.{}.7.1", i % 30)
    })
    .await;
    let row = scheduled_pass(&lambda).await;
    assert_eq!(row["action"], "abort", "{row}");
    // Aborted: a device on the rollout version is offered the stable one again.
    assert_eq!(
        offered_through(&lambda, &rollout_device(5), "1.0.2")
            .await
            .as_deref(),
        Some("1.0.1")
    );
    let history = history_on(&env);
    let last = &history[0];
    assert_eq!(last["action"], "rollout-abort", "{history}");
    assert_eq!(last["who"], "updraft (automatic)", "{history}");
    let detail = last["detail"].as_str().unwrap();
    assert!(
        detail.contains("step 50%")
            && detail.contains("70 of 70 devices failed, from 31 networks")
            && detail.contains("aborted"),
        "{detail}"
    );
}

/// Update checks become CloudWatch metrics (Embedded Metric Format lines on stdout), written
/// by a check inside its invocation once the interval has passed; at `info`, a device already
/// up to date writes no log line, an offer one.
#[tokio::test]
async fn lambda_counts_checks_as_metrics_not_log_lines() {
    let env = binary_env().await;
    let tmp = tempfile::tempdir().unwrap();
    release_on(&env, &tmp.path().join("www"), "1.0.1", &[]);
    let (out, err) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut env = env.clone();
    env.push(("RUST_LOG".into(), "info".into()));
    // 1 s, so that the test need not wait a minute for the lines.
    env.push(("UPDRAFT_METRICS_INTERVAL".into(), "1".into()));
    let lambda = Lambda::start_with(
        &env,
        std::fs::File::create(&out).unwrap().into(),
        std::fs::File::create(&err).unwrap().into(),
    )
    .await;
    let check = |device: String, running: &str| {
        let mut body = plugin_body(APP_ID, "1.0.0", running);
        body["device_id"] = device.into();
        lambda.invoke(v2_event("/updates", &body, "198.51.100.7"))
    };
    for i in 0..3 {
        answer_of(&check(rollout_device(i), "1.0.1").await);
    }
    assert_eq!(
        answer_of(&check(rollout_device(9), "1.0.0").await)["version"],
        "1.0.1"
    );
    let metric_lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    // The counts go out with the first check after the interval: wait until a check has
    // written every count so far (awaited, bounded).
    let total = |lines: &[serde_json::Value]| -> u64 {
        lines
            .iter()
            .map(|l| l["UpdateChecks"].as_u64().unwrap())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut checks: u64 = 4;
    let lines = loop {
        answer_of(&check(rollout_device(10 + checks as u32), "1.0.1").await);
        checks += 1;
        let lines = metric_lines();
        if total(&lines) == checks {
            break lines;
        }
        assert!(Instant::now() < deadline, "no metric line within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for l in &lines {
        assert_eq!(l["app"], APP_ID, "{l}");
        assert_eq!(l["channel"], "production", "{l}");
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Updraft",
            "{l}"
        );
    }
    let count = |decision: &str| -> u64 {
        let these: Vec<_> = lines
            .iter()
            .filter(|l| l["decision"] == decision)
            .cloned()
            .collect();
        total(&these)
    };
    assert_eq!(count("offer"), 1, "{lines:?}");
    assert_eq!(count("no_new_version_available"), checks - 1, "{lines:?}");
    let log = std::fs::read_to_string(&err).unwrap();
    let check_lines: Vec<&str> = log.lines().filter(|l| l.contains("update check")).collect();
    assert_eq!(
        check_lines.len(),
        1,
        "only the offer is logged at info: {log}"
    );
    assert!(check_lines[0].contains("\"decision\":\"offer\""), "{log}");
}
