//! A zip made by the real Capgo CLI (`capgo bundle zip`) is released as is, and devices are
//! told the checksum the Capgo CLI printed.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

/// The fixture app with the Capgo CLI installed (by scripts/setup.sh).
fn fixture() -> std::path::PathBuf {
    let dir = std::env::var("UPDRAFT_TEST_CAPGO")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capgo-app"));
    assert!(
        dir.join("node_modules/.bin/capgo").exists(),
        "the Capgo CLI is not installed in {}: run scripts/test.sh (or scripts/setup.sh)",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn capgo_cli_zip_is_accepted_with_its_checksum() {
    let fixture = fixture();
    let work = tempfile::tempdir().unwrap();
    for f in ["package.json", "capacitor.config.json"] {
        std::fs::copy(fixture.join(f), work.path().join(f)).unwrap();
    }
    let web = work.path().join("dist");
    write_web_dir(&web, "zipped by capgo");
    std::os::unix::fs::symlink(
        fixture.join("node_modules"),
        work.path().join("node_modules"),
    )
    .unwrap();

    let out = Command::new(fixture.join("node_modules/.bin/capgo"))
        .args([
            "bundle",
            "zip",
            "com.example.capgo",
            "--path",
            "./dist",
            "--bundle",
            "1.0.1",
            "--json",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "capgo bundle zip failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The JSON is pretty-printed over several lines; anything around it is noise.
    let json = &stdout[stdout.find('{').unwrap()..=stdout.rfind('}').unwrap()];
    let printed: serde_json::Value = serde_json::from_str(json).unwrap();
    let capgo_checksum = printed["checksum"].as_str().unwrap().to_owned();
    let zip_path = work.path().join(printed["filename"].as_str().unwrap());
    assert_eq!(
        sha256_hex(&std::fs::read(&zip_path).unwrap()),
        capgo_checksum
    );

    let data = work.path().join("updraft-data");
    let data_s = data.to_str().unwrap();
    let out = run(&[
        "release",
        "--data",
        data_s,
        "--app",
        "com.example.capgo",
        "--version",
        "1.0.1",
        "--zip",
        zip_path.to_str().unwrap(),
        "--checksum",
        &capgo_checksum,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start(&["--data", data_s], &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer: serde_json::Value = client
        .post(server.url("/updates"))
        .json(&plugin_body("com.example.capgo", "1.0.0", "builtin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["version"], "1.0.1", "{answer}");
    assert_eq!(answer["checksum"], capgo_checksum.as_str());
    let bytes = client
        .get(answer["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        capgo_checksum,
        "the served bytes are Capgo's zip, untouched"
    );

    // Delta updates from Capgo's zip: one manifest entry per file of the zip, each hash the
    // SHA-256 of that file, each download decoding to it.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        files.insert(entry.name().to_owned(), body);
    }
    let manifest = answer["manifest"].as_array().expect("a manifest");
    assert_eq!(manifest.len(), files.len(), "{answer}");
    for entry in manifest {
        let name = entry["file_name"].as_str().unwrap();
        let plain = name.strip_suffix(".br").unwrap_or(name);
        let original = &files[plain];
        assert_eq!(entry["file_hash"], sha256_hex(original).as_str(), "{name}");
        let body = client
            .get(entry["download_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let decoded = if name.ends_with(".br") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut brotli::Decompressor::new(&body[..], 4096), &mut out)
                .unwrap();
            out
        } else {
            body.to_vec()
        };
        assert_eq!(&decoded, original, "{name}");
    }
}
