//! End to end on the embedded store, through the real binary: release a web folder, serve it,
//! check for an update as the plugin does, download the bundle and verify it as the plugin does.

mod support;

use std::time::Duration;

use support::*;

async fn check(server: &Server, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let res = support::client()
        .post(server.url("/updates"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json");
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn release_serve_check_download_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let web = tmp.path().join("www");
    write_web_dir(&web, "v1.0.1");
    let data_s = data.to_str().unwrap();

    let out = release(&data, "1.0.1", Some(&web), &["--json"]);
    assert_ok(&out);
    let released: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(released["version"], "1.0.1");
    assert_eq!(released["channel"], "production");

    let mut server = Server::start(&["--data", data_s], &[("UPDRAFT_CACHE_TTL", "0")]);
    let (status, answer) = check(&server, &plugin_body(APP_ID, "1.0.0", "builtin")).await;
    assert_eq!(status, 200, "{answer}");
    let obj = answer.as_object().unwrap();
    assert!(
        !obj.contains_key("error") && !obj.contains_key("kind"),
        "a real update carries no error/kind: {answer}"
    );
    assert_eq!(answer["version"], "1.0.1");
    assert_eq!(answer["checksum"], released["checksum"]);
    let url = answer["url"].as_str().unwrap();
    assert!(url.starts_with(&server.origin), "{url}");

    // The download is what the plugin verifies: SHA-256 of the zip bytes, lowercase hex.
    let res = support::client().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let zip = res.bytes().await.unwrap();
    let checksum = answer["checksum"].as_str().unwrap();
    assert_eq!(sha256_hex(&zip), checksum);
    assert_eq!(checksum.len(), 64);
    let names = zip_names(&zip);
    assert!(
        names.contains(&"index.html".to_owned()),
        "index.html at the zip root: {names:?}"
    );

    // Android resumes with Range: a 206 with the tail.
    let res = support::client()
        .get(url)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), zip.slice(10..));

    // Tampered and unsigned URLs are refused with JSON.
    let tampered = url.replace("signature=", "signature=00");
    let res = support::client().get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(
        support::client()
            .get(unsigned)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let other_key = url.replace(".zip?", "0.zip?");
    assert_eq!(
        support::client()
            .get(&other_key)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // The device now runs 1.0.1: up to date, with the kind the plugin needs.
    let (_, answer) = check(&server, &plugin_body(APP_ID, "1.0.0", "1.0.1")).await;
    assert_eq!(
        answer,
        serde_json::json!({"error":"no_new_version_available","message":"No new version available","kind":"up_to_date"})
    );

    // A release written while the server runs is seen (cache TTL 0 here).
    write_web_dir(&web, "v1.0.2");
    let out = release(&data, "1.0.2", Some(&web), &[]);
    assert_ok(&out);
    let (_, answer) = check(&server, &plugin_body(APP_ID, "1.0.0", "1.0.1")).await;
    assert_eq!(answer["version"], "1.0.2");

    // Re-releasing 1.0.2 with other bytes is refused, and changes nothing.
    write_web_dir(&web, "something else");
    let out = release(&data, "1.0.2", Some(&web), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already released with different bytes"),
        "{err}"
    );
    let (_, again) = check(&server, &plugin_body(APP_ID, "1.0.0", "1.0.1")).await;
    assert_eq!(again["checksum"], answer["checksum"]);

    // Re-releasing the same bytes is a no-op that succeeds (e.g. to another channel).
    write_web_dir(&web, "v1.0.2");
    let out = release(&data, "1.0.2", Some(&web), &["--channel", "beta", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reused_bundle"], true);

    // A builtin release sends devices back to the store build.
    let out = release(&data, "builtin", None, &[]);
    assert_ok(&out);
    let (_, answer) = check(&server, &plugin_body(APP_ID, "1.0.0", "1.0.2")).await;
    assert_eq!(answer, serde_json::json!({"version":"builtin"}));
    assert!(server.alive());
}

#[tokio::test]
async fn expired_urls_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let web = tmp.path().join("www");
    write_web_dir(&web, "expiry");
    let data_s = data.to_str().unwrap();
    let out = release(&data, "1.0.1", Some(&web), &[]);
    assert!(out.status.success());
    let server = Server::start(&["--data", data_s, "--url-ttl", "1"], &[]);
    let (_, answer) = check(&server, &plugin_body(APP_ID, "1.0.0", "builtin")).await;
    let url = answer["url"].as_str().unwrap().to_owned();
    assert_eq!(
        support::client().get(&url).send().await.unwrap().status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = support::client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[test]
fn release_refuses_bad_bundles_with_one_clear_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();

    // A folder without index.html.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = release(&data, "1.0.0", Some(&empty), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no index.html"));

    // The wrapper folder plus __MACOSX zip that iOS cannot open.
    let zip_path = tmp.path().join("bad.zip");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("www/index.html", o).unwrap();
        z.write_all(b"notifyAppReady").unwrap();
        z.start_file("__MACOSX/www/._index.html", o).unwrap();
        z.write_all(b"junk").unwrap();
        z.finish().unwrap();
    }
    let out = run(&[
        "release",
        "--data",
        data_s,
        "--app",
        APP_ID,
        "--version",
        "1.0.0",
        "--zip",
        zip_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["message"].as_str().unwrap().contains("iOS cannot"), "{v}");

    // No notifyAppReady() anywhere: the plugin would roll it back.
    let web = tmp.path().join("www");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<p>no updater call</p>").unwrap();
    let out = release(&data, "1.0.0", Some(&web), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("notifyAppReady"));
    let out = release(&data, "1.0.0", Some(&web), &["--no-code-check"]);
    assert_ok(&out);

    // Bad names.
    for (args, needle) in [
        (
            vec!["--app", "not-an-id", "--version", "1.0.0"],
            "reverse-domain",
        ),
        (
            vec!["--app", APP_ID, "--version", "1.0"],
            "semantic version",
        ),
        (
            vec!["--app", APP_ID, "--version", "1.0.1", "--channel", "a#b"],
            "channel",
        ),
        (
            vec!["--app", APP_ID, "--version", "1.0.1", "--checksum", "ABC"],
            "does not match",
        ),
    ] {
        let mut full = vec![
            "release",
            "--data",
            data_s,
            "--dir",
            web.to_str().unwrap(),
            "--no-code-check",
        ];
        full.extend(args);
        let out = run(&full);
        assert!(!out.status.success(), "{full:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
}
