//! One update check in-process: parse → decide → answer (with a signed bundle URL), the
//! release already cached. This is the work every app start of every device costs.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use updraft::api::{AppState, update_check};
use updraft::domain::decide::decide_update;
use updraft::domain::protocol::parse_update_request;
use updraft::domain::release::{AttrValue, Item, Target, release_sk};
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
        let state = AppState::embedded(dir.path(), Duration::from_secs(3600), Duration::from_secs(3600), None).unwrap();
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

    let snapshot = rt.block_on(state.releases.get("com.example.app")).unwrap();
    c.bench_function("parse + decide only", |b| {
        b.iter(|| {
            let req = parse_update_request(std::hint::black_box(BODY.as_bytes())).unwrap();
            decide_update(&req, snapshot.as_deref(), None).label()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
