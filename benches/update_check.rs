//! One update check in-process: parse → decide → answer (with a signed bundle URL), the
//! release already cached. This is the work every app start of every device costs.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use updraft::api::update_check;
use updraft::domain::decide::decide_update;
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::keys::{Target, release_sk};
use updraft::domain::protocol::parse_update_request;
use updraft::store::ItemWriter;
use updraft::store::embedded::EmbeddedStore;

const BODY: &str = r#"{"platform":"android","device_id":"6a1f0b3e-1111-4222-8333-9c2d00000000","app_id":"com.example.app","custom_id":"","version_build":"1.2.0","version_code":"12","version_os":"14","version_name":"builtin","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"google_play","defaultChannel":""}"#;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S("1.3.0".into()));
        item.insert("bundle".into(), AttrValue::S("com.example.app/1.3.0/6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5.zip".into()));
        item.insert("checksum".into(), AttrValue::S("6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5".into()));
        store.put_item("com.example.app", &release_sk("production", Target::All), &item).await.unwrap();
        let state = updraft::runtime::backend::open_embedded_state(dir.path(), Duration::from_secs(3600), Duration::from_secs(3600)).unwrap();
        // Warm the cache: the benchmark measures the cached path.
        let first = update_check(&state, BODY.as_bytes(), "http://127.0.0.1:8080").await.unwrap();
        assert!(std::str::from_utf8(&first).unwrap().contains("\"url\""));
        Arc::new(state)
    });

    c.bench_function(
        "update_check (parse, cached release, decide, signed answer)",
        |b| {
            b.iter(|| {
                rt.block_on(update_check(
                    &state,
                    std::hint::black_box(BODY.as_bytes()),
                    "http://127.0.0.1:8080",
                ))
                .unwrap()
            })
        },
    );

    // Nine checks in ten: a device already on the release (no device read, no log line).
    let current = BODY.replace(r#""version_name":"builtin""#, r#""version_name":"1.3.0""#);
    let answer = rt
        .block_on(update_check(
            &state,
            current.as_bytes(),
            "http://127.0.0.1:8080",
        ))
        .unwrap();
    assert!(
        std::str::from_utf8(&answer)
            .unwrap()
            .contains("no_new_version_available")
    );
    c.bench_function(
        "update_check, device up to date (parse, cached release, decide)",
        |b| {
            b.iter(|| {
                rt.block_on(update_check(
                    &state,
                    std::hint::black_box(current.as_bytes()),
                    "http://127.0.0.1:8080",
                ))
                .unwrap()
            })
        },
    );

    // Delta: the same check answered with a 1,000-file manifest (one signed URL per file).
    let delta_dir = tempfile::tempdir().unwrap();
    let delta_state = rt.block_on(async {
        use updraft::bundles::BundleStore;
        use updraft::domain::manifest::{Manifest, ManifestFile, file_key};
        let store = EmbeddedStore::open(delta_dir.path()).unwrap();
        let bundles = updraft::bundles::local::LocalBundles::open(delta_dir.path(), Duration::from_secs(3600)).unwrap();
        let files = (0..1000)
            .map(|i| {
                let hash = updraft::bundles::sha256_hex(format!("file {i}").as_bytes());
                ManifestFile {
                    file_name: format!("assets/chunk-{i:04}.js.br"),
                    key: file_key("com.example.app", &hash, true),
                    file_hash: hash,
                    size: 2000,
                }
            })
            .collect();
        let json = serde_json::to_vec(&Manifest { files }).unwrap();
        let key = "com.example.app/1.3.0/m.manifest.json";
        bundles.put_verified(key, &json, &updraft::bundles::sha256_hex(&json)).await.unwrap();
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S("1.3.0".into()));
        item.insert("bundle".into(), AttrValue::S("com.example.app/1.3.0/6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5.zip".into()));
        item.insert("checksum".into(), AttrValue::S("6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5".into()));
        item.insert("manifest".into(), AttrValue::S(key.into()));
        store.put_item("com.example.app", &release_sk("production", Target::All), &item).await.unwrap();
        let state = updraft::runtime::backend::open_embedded_state(delta_dir.path(), Duration::from_secs(3600), Duration::from_secs(3600)).unwrap();
        let answer = update_check(&state, BODY.as_bytes(), "https://updates.example.com").await.unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &answer).unwrap();
        let gzipped = gz.finish().unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(parsed["manifest"].as_array().unwrap().len(), 1000);
        eprintln!(
            "1,000-file manifest answer: {} bytes, {} gzipped ({:.1} per entry on the wire)",
            answer.len(),
            gzipped.len(),
            gzipped.len() as f64 / 1000.0
        );
        Arc::new(state)
    });
    c.bench_function(
        "update_check with a 1,000-file manifest (cached, signing included)",
        |b| {
            b.iter(|| {
                rt.block_on(update_check(
                    &delta_state,
                    std::hint::black_box(BODY.as_bytes()),
                    "https://updates.example.com",
                ))
                .unwrap()
            })
        },
    );

    let snapshot = rt.block_on(state.releases.get("com.example.app")).unwrap();
    c.bench_function("parse + decide only", |b| {
        b.iter(|| {
            let req = parse_update_request(std::hint::black_box(BODY.as_bytes())).unwrap();
            decide_update(&req, snapshot.as_deref(), None).label()
        })
    });

    // The same check with an active rollout on the item (50 %: the device's bucket decides
    // which version it gets), to set next to the figure above.
    let mut rolled = Item::new();
    rolled.insert("version".into(), AttrValue::S("1.2.0".into()));
    rolled.insert(
        "bundle".into(),
        AttrValue::S("com.example.app/1.2.0/b.zip".into()),
    );
    rolled.insert(
        "checksum".into(),
        AttrValue::S("6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5".into()),
    );
    for (k, v) in [
        ("rollout_version", "1.3.0"),
        ("rollout_bundle", "com.example.app/1.3.0/c.zip"),
        (
            "rollout_checksum",
            "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5",
        ),
        ("rollout_id", "5f0c3a9e1b2d4c6a"),
    ] {
        rolled.insert(k.into(), AttrValue::S(v.into()));
    }
    rolled.insert("rollout_percent".into(), AttrValue::N(50.into()));
    let sk = release_sk("production", Target::All);
    let with_rollout = updraft::domain::snapshot::AppSnapshot::from_items([(sk.as_str(), &rolled)]);
    c.bench_function("parse + decide only, active rollout", |b| {
        b.iter(|| {
            let req = parse_update_request(std::hint::black_box(BODY.as_bytes())).unwrap();
            decide_update(&req, Some(&with_rollout), None).label()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
