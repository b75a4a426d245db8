//! `updraft serve` against slow writers and slow clients, through the real binary: another
//! process holding SQLite's write lock, stats writers stuck behind it, clients that never finish
//! their headers or body, more connections than the cap.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

fn stats_event(device: &str) -> serde_json::Value {
    let mut e = plugin_body(APP_ID, "1.0.0", "builtin");
    e["device_id"] = device.into();
    e["action"] = "set".into();
    e["version_name"] = "1.0.1".into();
    e["old_version_name"] = "builtin".into();
    e["timestamp"] = 1_760_000_000_000u64.into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_cached_checks_do_not_wait_for_the_write_lock() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    write_web_dir(web.path(), "stall");
    assert_ok(&release(data.path(), "1.0.1", Some(web.path()), &[]));
    let server = Server::start(
        &["--data", data.path().to_str().unwrap(), "--cache-ttl", "60"],
        &[],
    );
    let http = support::client();
    let check = plugin_body(APP_ID, "1.0.0", "builtin");
    // Warm the release cache.
    let answer: serde_json::Value = http
        .post(server.url("/updates"))
        .json(&check)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["version"], "1.0.1");

    // Another process (here: this one, on its own connection) holds the write lock for 4 s,
    // as `updraft release` does while it writes.
    let db = data.path().join("updraft.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(4));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let locked_at = Instant::now();

    // Stats writers pile up behind the lock (more than the runtime has threads).
    let mut writers = Vec::new();
    for i in 0..8 {
        let (http, url) = (http.clone(), server.url("/stats"));
        let body = serde_json::json!([stats_event(&format!("00000000-0000-4000-8000-{i:012}"))]);
        writers.push(tokio::spawn(async move {
            http.post(url).json(&body).send().await.map(|r| r.status())
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let health = http.get(server.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let took_health = started.elapsed();
        let started = Instant::now();
        let answer: serde_json::Value = http
            .post(server.url("/updates"))
            .json(&check)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let took_check = started.elapsed();
        assert_eq!(answer["version"], "1.0.1", "{answer}");
        worst = worst.max(took_health).max(took_check);
    }
    eprintln!("slowest /health or cached check under a held write lock: {worst:?}");
    assert!(
        locked_at.elapsed() < Duration::from_secs(4),
        "the checks ran while the lock was held"
    );
    assert!(worst < Duration::from_millis(200), "{worst:?}");
    holder.join().unwrap();
    // The writers waited for the lock and then got their batch in.
    for w in writers {
        assert_eq!(w.await.unwrap().unwrap(), 200);
    }
}

fn raw(server: &Server) -> TcpStream {
    let addr = server.origin.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s
}

/// Reads until the server closes; the text and how long that took.
fn read_to_close(mut s: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn status_and_json(answer: &str) -> (u16, serde_json::Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer:?}")),
    )
}

#[test]
fn slow_clients_are_cut_off_and_short_bodies_are_bad_requests() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &[
            "--data",
            data.path().to_str().unwrap(),
            "--read-timeout",
            "1",
        ],
        &[],
    );
    // Headers that never end, and a connection that never sends anything: closed after ~1 s.
    let mut slow = raw(&server);
    slow.write_all(b"POST /updates HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let idle = raw(&server);
    let (_, took) = read_to_close(slow);
    assert!(took < Duration::from_secs(3), "slow headers held {took:?}");
    let (_, took) = read_to_close(idle);
    assert!(
        took < Duration::from_secs(3),
        "an idle connection held {took:?}"
    );

    // A body that stops arriving: 408 JSON after the read timeout.
    let mut s = raw(&server);
    s.write_all(b"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"app_id\":")
        .unwrap();
    let (answer, took) = read_to_close(s);
    let (status, json) = status_and_json(&answer);
    assert_eq!(
        (status, json["error"].as_str()),
        (408, Some("request_timeout")),
        "{answer}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A body cut short (the client closed its side): 400, not 413.
    for path in ["/updates", "/stats", "/channel_self"] {
        let mut s = raw(&server);
        s.write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"app_id\":").as_bytes())
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (answer, _) = read_to_close(s);
        let (status, json) = status_and_json(&answer);
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("incomplete_body")),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &[
            "--data",
            data.path().to_str().unwrap(),
            "--max-connections",
            "2",
        ],
        &[],
    );
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert_eq!(
        quick
            .get(server.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let first = raw(&server);
    let second = raw(&server);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        quick.get(server.url("/health")).send().await.is_err(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let started = Instant::now();
    let res = support::client()
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(second);
}

#[tokio::test]
async fn bundle_downloads_follow_no_links_and_answer_json() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    write_web_dir(web.path(), "links");
    assert_ok(&release(data.path(), "1.0.1", Some(web.path()), &[]));
    let server = Server::start(&["--data", data.path().to_str().unwrap()], &[]);
    let http = support::client();
    let answer: serde_json::Value = http
        .post(server.url("/updates"))
        .json(&plugin_body(APP_ID, "1.0.0", "builtin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = answer["url"].as_str().unwrap().to_owned();
    let full = http.get(&url).send().await.unwrap().bytes().await.unwrap();

    // A Range that cannot be parsed is ignored: the whole file, 200 (RFC 9110), not 416.
    for range in ["bytes=abc", "bytes=5-1", "bytes=0-1,4-5", "pages=1-2"] {
        let res = http.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(res.status(), 200, "{range}");
        assert_eq!(res.bytes().await.unwrap(), full, "{range}");
    }
    let res = http
        .get(&url)
        .header("range", "bytes=4-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), full[4..]);
    // A well-formed range past the end: 416, as JSON, with the length in Content-Range.
    let res = http
        .get(&url)
        .header("range", "bytes=99999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{}", full.len())
    );
    assert_eq!(res.headers()["content-type"], "application/json");
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "range_not_satisfiable");
    // Every other error is JSON too.
    for (bad, status) in [
        (url.replace("signature=", "signature=00"), 403),
        (
            format!("{}/bundles/nope.zip?expires=1&signature=00", server.origin),
            403,
        ),
    ] {
        let res = http.get(&bad).send().await.unwrap();
        assert_eq!(res.status(), status, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/json");
    }

    // The bundle file replaced by a link to a file outside: never served.
    let key = url
        .split("/bundles/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .unwrap()
        .to_owned();
    let file = data.path().join("bundles").join(&key);
    let outside = data.path().join("secret.txt");
    std::fs::write(&outside, "not for devices").unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&outside, &file).unwrap();
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(!res.text().await.unwrap().contains("not for devices"));
    // Nor through a linked folder on the way.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&outside, &full).unwrap();
    let app_dir = data
        .path()
        .join("bundles")
        .join(key.split('/').next().unwrap());
    let moved = data.path().join("moved");
    std::fs::rename(&app_dir, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &app_dir).unwrap();
    std::fs::copy(&outside, moved.join(key.split_once('/').unwrap().1)).unwrap();
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[test]
fn the_data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("updraft-data");
    let web = tempfile::tempdir().unwrap();
    write_web_dir(web.path(), "perms");
    assert_ok(&release(&data, "1.0.1", Some(web.path()), &[]));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in ["updraft.db", "updraft.db-wal", "url-secret"] {
        let path = data.join(file);
        if path.exists() || file != "updraft.db-wal" {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    // An existing folder and database are tightened when opened.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("updraft.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _server = Server::start(&["--data", data.to_str().unwrap()], &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("updraft.db")), 0o600);
}

#[tokio::test]
async fn error_messages_never_echo_a_long_input() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    write_web_dir(web.path(), "clip");
    assert_ok(&release(data.path(), "1.0.1", Some(web.path()), &[]));
    let server = Server::start(&["--data", data.path().to_str().unwrap()], &[]);
    let http = support::client();
    let long = "é".repeat(30_000); // 60 KB
    let mut cases = Vec::new();
    for field in ["is_emulator", "version_build", "defaultChannel", "platform"] {
        let mut b = plugin_body(APP_ID, "1.0.0", "builtin");
        b[field] = long.clone().into();
        cases.push(("/updates", b));
    }
    let mut b = plugin_body(APP_ID, "1.0.0", "builtin");
    b["channel"] = long.clone().into();
    cases.push(("/channel_self", b));
    for (path, body) in cases {
        let res = http
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let json: serde_json::Value = res.json().await.unwrap();
        let message = json["message"].as_str().unwrap_or_else(|| panic!("{json}"));
        assert!(json["error"].is_string(), "{json}");
        assert!(
            message.chars().count() <= 257,
            "{path}: {} chars",
            message.len()
        );
    }
}
