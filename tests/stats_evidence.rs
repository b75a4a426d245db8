//! `POST /stats` against the real `updraft serve` (embedded store), as real devices and as a
//! stranger would use it: genuine failures from 30 networks pause a release; the plugin's
//! largest events are accepted and stored whole; big bodies leave the server's peak memory
//! (VmHWM) within bounds.

mod support;

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use support::*;

/// A client whose requests come from `ip` (its socket is bound to it).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn device_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A stats event as the plugin sends it in a batch.
fn event(device: &str, action: &str, version: &str) -> serde_json::Value {
    let mut e = plugin_body(APP_ID, "1.0.0", version);
    e["device_id"] = device.into();
    e["action"] = action.into();
    e["old_version_name"] = "".into();
    e["timestamp"] = 1_795_910_400_000u64.into();
    e
}

async fn check(client: &reqwest::Client, server: &Server, device: &str) -> serde_json::Value {
    let mut body = plugin_body(APP_ID, "1.0.0", "builtin");
    body["device_id"] = device.into();
    let res = client
        .post(server.url("/updates"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn post_stats(client: &reqwest::Client, server: &Server, body: &serde_json::Value) {
    let res = client
        .post(server.url("/stats"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// What a real device does with a broken bundle: it checks, is offered the release,
/// downloads and verifies the zip, installs it (`set`), and rolls it back (`update_fail`).
async fn device_fails(client: &reqwest::Client, server: &Server, device: &str) {
    let offer = check(client, server, device).await;
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
    post_stats(
        client,
        server,
        &serde_json::json!([
            event(device, "download_zip_complete", "1.0.1"),
            event(device, "download_complete", "1.0.1"),
            event(device, "set", "1.0.1"),
        ]),
    )
    .await;
    post_stats(
        client,
        server,
        &serde_json::json!([
            event(device, "update_fail", "builtin"),
            event(device, "update_fail", "1.0.1"),
        ]),
    )
    .await;
}

fn released(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let data = tmp.path().join("data");
    let web = tmp.path().join("www");
    write_web_dir(&web, "evidence 1.0.1");
    assert_ok(&release(&data, "1.0.1", Some(&web), &[]));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_failures_from_30_networks_pause_a_release() {
    let tmp = tempfile::tempdir().unwrap();
    let data = released(&tmp);
    let server = Server::start(&["--data", data.to_str().unwrap(), "--cache-ttl", "0"], &[]);
    let bystander = client_from("127.0.200.1");
    for (i, n) in (10..40u32).enumerate() {
        if i == 29 {
            assert_eq!(
                check(&bystander, &server, &device_id(999)).await["version"],
                "1.0.1",
                "29 networks are not enough"
            );
        }
        device_fails(
            &client_from(&format!("127.0.{n}.1")),
            &server,
            &device_id(n),
        )
        .await;
    }
    let answer = check(&bystander, &server, &device_id(999)).await;
    assert_eq!(answer["error"], "release_paused", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("30 of 30 devices failed, from 30 networks"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_largest_events_are_accepted_and_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = released(&tmp);
    let log_path = tmp.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_with_stderr(
        &["--data", data.to_str().unwrap()],
        &[("UPDRAFT_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
        Stdio::from(log),
    );
    // A WebView error as the plugin reports it: 16 keys at their caps (~5,500 characters),
    // `stack` at 2,048 and `message` at 1,024 non-ASCII characters.
    let stack: String = "at render (https://localhost/assets/app.js:1:1)\n"
        .chars()
        .cycle()
        .take(2048)
        .collect();
    let message: String = "ошибка загрузки 読み込み失敗 "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    let mut metadata = serde_json::Map::new();
    metadata.insert("stack".into(), stack.clone().into());
    metadata.insert("message".into(), message.clone().into());
    for i in 0..14 {
        metadata.insert(format!("field_{i}"), "x".repeat(170).into());
    }
    let mut e = event(&device_id(1), "webview_javascript_error", "1.0.1");
    e["metadata"] = serde_json::Value::Object(metadata);
    // Longer than the plugin ever sends: clipped, still accepted.
    let mut long = event(&device_id(1), "webview_javascript_error", "1.0.1");
    long["metadata"] = serde_json::json!({ "stack": "é".repeat(5000) });
    let client = client_from("127.0.0.1");
    for body in [serde_json::json!([e.clone(), long]), e] {
        let res = client
            .post(server.url("/stats"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let answer: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "ok");
    }
    drop(server);
    let logged: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "updraft::event")
        .collect();
    assert_eq!(logged.len(), 3, "every event is stored as one log line");
    let meta: Vec<serde_json::Map<String, serde_json::Value>> = logged
        .iter()
        .map(|l| serde_json::from_str(l["metadata"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(meta[0]["stack"], stack.as_str());
    assert_eq!(meta[0]["message"], message.as_str());
    assert_eq!(meta[0].len(), 16);
    assert_eq!(
        meta[1]["stack"],
        "é".repeat(2048),
        "clipped at 2,048 characters"
    );
    assert_eq!(meta[2]["message"], message.as_str());
}

/// The peak resident set (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_bodies_leave_peak_memory_bounded() {
    const MB: u64 = 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let data = released(&tmp);
    let server = Server::start(&["--data", data.to_str().unwrap()], &[]);
    let client = client_from("127.0.0.1");
    // Warm up: allocator arenas, the SQLite page cache, the release cache.
    check(&client, &server, &device_id(1)).await;
    post_stats(
        &client,
        &server,
        &serde_json::json!([event(&device_id(1), "set", "1.0.1")]),
    )
    .await;
    let base = peak_rss(server.pid());

    // 1 MiB of empty events: the first one is refused, the rest is never kept.
    let empties = {
        let mut s = String::with_capacity(1 << 20);
        s.push('[');
        while s.len() + 4 < 1 << 20 {
            s.push_str("{},");
        }
        s.push_str("{}]");
        s
    };
    let post = |body: String| {
        let (client, url) = (client.clone(), server.url("/stats"));
        async move {
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }
    };
    assert_eq!(post(empties.clone()).await, 400);
    let one = peak_rss(server.pid()).saturating_sub(base);

    // 1 MiB of valid events (~1,600): 200 are read, the rest skipped.
    let valid = {
        let e = serde_json::to_string(&event(&device_id(2), "app_moved_to_foreground", "1.0.1"))
            .unwrap();
        let n = ((1 << 20) - 2) / (e.len() + 1);
        format!("[{}]", vec![e; n].join(","))
    };
    assert!(valid.len() <= 1 << 20);
    assert_eq!(post(valid).await, 200);
    let one_valid = peak_rss(server.pid()).saturating_sub(base);

    let parallel: Vec<_> = (0..8)
        .map(|_| tokio::spawn(post(empties.clone())))
        .collect();
    for p in parallel {
        assert_eq!(p.await.unwrap(), 400);
    }
    let eight = peak_rss(server.pid()).saturating_sub(base);
    eprintln!(
        "peak RSS: {} MB at rest; growth {:.1} MB for one 1 MiB [{{}},…] body, {:.1} MB for 1 MiB of valid events, {:.1} MB with 8 in parallel",
        base / MB,
        one as f64 / MB as f64,
        one_valid as f64 / MB as f64,
        eight as f64 / MB as f64
    );
    assert!(one < 16 * MB, "one body grew the peak by {one} bytes");
    assert!(
        one_valid < 16 * MB,
        "one body grew the peak by {one_valid} bytes"
    );
    assert!(eight < 64 * MB, "8 bodies grew the peak by {eight} bytes");
}
