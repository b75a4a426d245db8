//! Delta updates end to end through the real binary, on the embedded store and on AWS
//! emulators (moto + s3s-fs, which checks every presigned signature and expiry).
//!
//! The device side is a simulation of the plugin written from protocol.md §4 (and the
//! plugin's `DownloadService`): for each manifest entry it reuses a file it already holds with
//! that SHA-256, else downloads `download_url` (following redirects), Brotli-decodes a `.br`
//! body, checks the SHA-256 and writes the file without `.br`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use support::*;

const FILES: usize = 300;

/// Deterministic filler text: words from a small PRNG, so files compress like real code.
fn text(seed: u64, len: usize) -> String {
    const WORDS: [&str; 16] = [
        "const", "function", "return", "value", "render", "props", "state", "await", "import",
        "export", "default", "window", "document", "element", "=>", "null",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % 16) as usize]);
        out.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
        out.push_str(&format!("v{}", x % 997));
        out.push(';');
    }
    out
}

/// A 300-file web app; `changed` makes one file differ.
fn write_app(dir: &Path, changed: bool) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "index.html".to_owned(),
        b"<!doctype html><script src=\"assets/f000.js\"></script><script>CapacitorUpdater.notifyAppReady()</script>".to_vec(),
    );
    for i in 1..FILES {
        let mut body = text(i as u64, 1500 + (i * 37) % 3000).into_bytes();
        if changed && i == 150 {
            body.extend_from_slice(b"\n// version 2 fix\n");
        }
        files.insert(format!("assets/f{i:03}.js"), body);
    }
    // Tiny files stay uncompressed (Brotli saves less than 10 bytes).
    files.insert("assets/tiny.txt".to_owned(), b"ok".to_vec());
    for (name, body) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    files
}

/// The plugin's manifest download (protocol.md §4). Returns the new bundle folder and the
/// bytes downloaded.
async fn apply_manifest(
    held: &BTreeMap<String, Vec<u8>>,
    manifest: &[serde_json::Value],
) -> (BTreeMap<String, Vec<u8>>, u64) {
    let by_hash: HashMap<String, &Vec<u8>> = held.values().map(|b| (sha256_hex(b), b)).collect();
    let mut out = BTreeMap::new();
    let mut downloaded = 0u64;
    for entry in manifest {
        let name = entry["file_name"].as_str().expect("file_name is a string");
        let hash = entry["file_hash"].as_str().expect("file_hash is a string");
        let url = entry["download_url"]
            .as_str()
            .expect("download_url is a string");
        assert!(
            !name.starts_with('/') && !name.contains('\\') && !name.split('/').any(|c| c == ".."),
            "manifest_path_fail: {name}"
        );
        assert_eq!(hash, hash.to_lowercase(), "iOS compares case-sensitively");
        let (target, brotli) = match name.strip_suffix(".br") {
            Some(t) => (t.to_owned(), true),
            None => (name.to_owned(), false),
        };
        assert!(!out.contains_key(&target), "duplicate target {target}");
        if let Some(bytes) = by_hash.get(hash) {
            out.insert(target, (*bytes).clone());
            continue;
        }
        let res = support::client().get(url).send().await.unwrap();
        assert!(
            res.status() == 200 || res.status() == 206,
            "download_manifest_file_fail {name}: {}",
            res.status()
        );
        let body = res.bytes().await.unwrap().to_vec();
        downloaded += body.len() as u64;
        let file = if brotli {
            let mut decoded = Vec::new();
            brotli::Decompressor::new(&body[..], 4096)
                .read_to_end(&mut decoded)
                .expect("download_manifest_brotli_fail");
            decoded
        } else {
            body
        };
        assert_eq!(
            sha256_hex(&file),
            hash,
            "download_manifest_checksum_fail {name}"
        );
        out.insert(target, file);
    }
    (out, downloaded)
}

/// An update check sent with `Accept-Encoding: gzip`: the answer, and its size on the wire.
async fn check_gzip(
    origin: &str,
    plugin_version: &str,
    version_name: &str,
) -> (serde_json::Value, usize) {
    let mut body = plugin_body(APP_ID, "1.0.0", version_name);
    body["plugin_version"] = plugin_version.into();
    let res = support::client()
        .post(format!("{origin}/updates"))
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let gzipped = res
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let wire = res.bytes().await.unwrap().to_vec();
    let json = if gzipped {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&wire[..])
            .read_to_end(&mut plain)
            .unwrap();
        plain
    } else {
        wire.clone()
    };
    (serde_json::from_slice(&json).unwrap(), wire.len())
}

/// What both backends must show; `count_files` counts stored file objects.
async fn scenario<F, Fut>(
    release: impl Fn(&str, &Path) -> serde_json::Value,
    origin: &str,
    count_files: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let tmp = tempfile::tempdir().unwrap();
    let (v1_dir, v2_dir) = (tmp.path().join("v1"), tmp.path().join("v2"));
    let v1 = write_app(&v1_dir, false);
    let v2 = write_app(&v2_dir, true);
    let r1 = release("1.0.1", &v1_dir);
    assert_eq!(r1["files"], FILES + 1, "{r1}");
    let after_v1 = count_files().await;
    assert_eq!(after_v1, FILES + 1);

    // A device on 1.0.1 holds v1's files (downloaded through v1's manifest).
    let (a1, _) = check_gzip(origin, "8.51.23", "builtin").await;
    let (held, _) = apply_manifest(&BTreeMap::new(), a1["manifest"].as_array().unwrap()).await;
    assert_eq!(held, v1);

    let r2 = release("1.0.2", &v2_dir);
    assert_eq!(
        r2["files_uploaded"], 1,
        "only the changed file is new: {r2}"
    );
    assert_eq!(
        count_files().await,
        after_v1 + 1,
        "object count grows by the changed file only"
    );

    let (answer, wire) = check_gzip(origin, "8.51.23", "1.0.1").await;
    assert_eq!(answer["version"], "1.0.2");
    assert!(
        answer["url"].as_str().unwrap().starts_with("http"),
        "the zip URL is still there"
    );
    assert_eq!(answer["checksum"].as_str().unwrap().len(), 64);
    let manifest = answer["manifest"].as_array().unwrap();
    assert_eq!(manifest.len(), FILES + 1);
    let per_entry = wire as f64 / manifest.len() as f64;
    println!(
        "answer with {} entries: {wire} bytes on the wire ({per_entry:.1} per entry)",
        manifest.len()
    );
    assert!(per_entry <= 150.0, "{per_entry} bytes per entry");

    let (folder, downloaded) = apply_manifest(&held, manifest).await;
    assert_eq!(folder, v2, "the device ends byte-identical to version 2");
    let zip_len = support::client()
        .get(answer["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len() as u64;
    println!("downloaded {downloaded} bytes of a {zip_len}-byte zip");
    assert!(downloaded > 0);
    assert!(
        downloaded * 50 <= zip_len,
        "{downloaded} > 2 % of {zip_len}"
    );

    // Plugins under Capgo's gate get the zip only; and no answer ever has an empty manifest.
    for old in ["7.0.34", "6.24.0", "5.9.0", "4.0.0"] {
        let (a, _) = check_gzip(origin, old, "1.0.1").await;
        assert_eq!(a["version"], "1.0.2");
        assert!(a.get("manifest").is_none(), "{old}: {a}");
    }
    let (a, _) = check_gzip(origin, "7.0.35", "1.0.1").await;
    assert_eq!(a["manifest"].as_array().unwrap().len(), FILES + 1);

    // manifest_size: the bytes of the files the plugin asks about.
    let mut body = plugin_body(APP_ID, "1.0.0", "1.0.1");
    body["version"] = "1.0.2".into();
    body["manifest"] = serde_json::Value::Array(manifest.clone());
    let res = support::client()
        .post(format!("{origin}/updates/manifest_size"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let size: serde_json::Value = res.json().await.unwrap();
    assert_eq!(size["knownFiles"], FILES + 1);
    assert_eq!(size["unknownFiles"], 0);
    assert!(size["totalSize"].as_u64().unwrap() > downloaded);

    // A tampered signature is refused with JSON.
    let url = manifest[0]["download_url"].as_str().unwrap();
    let tampered = format!("{}AAAA", &url[..url.len() - 4]);
    let res = support::client().get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let err: serde_json::Value = res.json().await.unwrap();
    assert_eq!(err["error"], "forbidden");
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn delta_update_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let release_one = |version: &str, dir: &Path| {
        let out = release(&data, version, Some(dir), &["--json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The store exists before the server starts.
    let seed = tmp.path().join("seed");
    write_web_dir(&seed, "seed");
    let out = run(&[
        "release",
        "--data",
        data.to_str().unwrap(),
        "--app",
        APP_ID,
        "--version",
        "0.0.1",
        "--channel",
        "seed",
        "--dir",
        seed.to_str().unwrap(),
        "--delta",
        "false",
        "--json",
    ]);
    assert_ok(&out);
    let seeded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(seeded.get("manifest").is_none(), "--delta false: {seeded}");
    let files_dir = data.join("bundles").join(APP_ID).join("files");
    assert_eq!(files_in(&files_dir), 0, "--delta false stores no files");

    let server = Server::start(
        &["--data", data.to_str().unwrap()],
        &[("UPDRAFT_CACHE_TTL", "0")],
    );
    scenario(release_one, &server.origin, || {
        let n = files_in(&files_dir);
        async move { n }
    })
    .await;

    // bundles list: file count and what a device on the previous version downloads.
    let out = run(&[
        "bundles",
        "list",
        "--data",
        data.to_str().unwrap(),
        "--app",
        APP_ID,
        "--json",
    ]);
    assert_ok(&out);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |v: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == v)
            .unwrap()
            .clone()
    };
    let r2 = row("1.0.2");
    assert_eq!(r2["files"], FILES + 1, "{r2}");
    assert_eq!(r2["previous"], "1.0.1");
    assert_eq!(
        r2["delta_bytes"],
        1100.min(r2["delta_bytes"].as_u64().unwrap())
    );
    assert!(
        r2["delta_bytes"].as_u64().unwrap() * 50 <= r2["size"].as_u64().unwrap(),
        "{r2}"
    );
    assert!(row("0.0.1").get("files").is_none());
    let before = files_in(&files_dir);

    // bundles delete: 1.0.1's one file that 1.0.2 does not share goes with it.
    let out = run(&[
        "bundles",
        "delete",
        "--data",
        data.to_str().unwrap(),
        "--app",
        APP_ID,
        "--version",
        "1.0.1",
        "--json",
    ]);
    assert_ok(&out);
    let deleted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deleted["files_deleted"], 1, "{deleted}");
    assert_eq!(files_in(&files_dir), before - 1);

    // Files are served with Range, like bundles.
    let (answer, _) = check_gzip(&server.origin, "8.51.23", "1.0.1").await;
    let entry = &answer["manifest"][1];
    let url = entry["download_url"].as_str().unwrap();
    let whole = support::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let res = support::client()
        .get(url)
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), whole.slice(5..));
}

#[tokio::test]
async fn delta_update_on_aws_emulators() {
    let env = support::aws::binary_env().await;
    let bucket = env
        .iter()
        .find(|(k, _)| k == "UPDRAFT_BUCKET")
        .unwrap()
        .1
        .clone();
    let release_one = |version: &str, dir: &Path| {
        let out = updraft()
            .args(["release", "--app", APP_ID, "--version", version, "--dir"])
            .arg(dir)
            .arg("--json")
            .envs(support::aws::pairs(&env))
            .output()
            .unwrap();
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut serve_env = support::aws::pairs(&env);
    serve_env.push(("UPDRAFT_CACHE_TTL", "0"));
    serve_env.push(("UPDRAFT_URL_SECRET", "0123456789abcdef0123456789abcdef"));
    // The first release creates the app; the server needs nothing before it.
    let server = Server::start(&[], &serve_env);
    let s3 = updraft::runtime::aws::s3_client(
        &support::aws::config_for(
            &support::aws::emulator("UPDRAFT_TEST_S3S"),
            updraft::runtime::aws::AwsTimeouts::OPERATOR,
        )
        .await,
    );
    let count = || {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        async move {
            let mut n = 0;
            let mut token = None;
            loop {
                let out = s3
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(format!("{APP_ID}/files/"))
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                n += out.contents().len();
                token = out.next_continuation_token().map(str::to_owned);
                if token.is_none() {
                    break n;
                }
            }
        }
    };
    scenario(release_one, &server.origin, count).await;
}
