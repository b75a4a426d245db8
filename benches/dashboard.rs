//! One refresh of the dashboard's live section on the embedded store, in-process through its
//! router (token check, the stores' reads, the operator commands' reports, SVG curves,
//! template): an app with three channels, a 5 % rollout, and 14 days of hourly counts for two
//! versions (336 points per curve, the most the store keeps).

use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use updraft::clock::Clock;
use updraft::domain::evidence::{EvidenceKey, EvidenceKind, EvidenceMark};
use updraft::store::EvidenceStore;
use updraft::store::embedded::EmbeddedStore;

const APP: &str = "com.example.app";

fn release(
    data: &std::path::Path,
    web: &std::path::Path,
    version: &str,
    channel: &str,
    extra: &[&str],
) {
    std::fs::create_dir_all(web).unwrap();
    std::fs::write(
        web.join("index.html"),
        format!("<script>CapacitorUpdater.notifyAppReady()</script>{version}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args([
            "release",
            "--app",
            APP,
            "--version",
            version,
            "--channel",
            channel,
            "--dir",
        ])
        .arg(web)
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    release(&data, &dir.path().join("w1"), "1.0.1", "production", &[]);
    release(
        &data,
        &dir.path().join("w2"),
        "1.1.0",
        "production",
        &["--rollout", "5", "--steps", "5,25,100"],
    );
    release(&data, &dir.path().join("w3"), "1.1.0", "beta", &[]);
    release(&data, &dir.path().join("w4"), "0.9.0", "staging", &[]);
    let (router, cookie, host) = rt.block_on(async {
        let store = EmbeddedStore::open(&data).unwrap();
        let now = updraft::clock::SystemClock.now();
        let mut device = 0u64;
        for hour in 0..336u64 {
            for version in ["1.0.1", "1.1.0"] {
                let marks: Vec<EvidenceMark> = (0..3)
                    .map(|i| {
                        device += 1;
                        EvidenceMark {
                            key: EvidenceKey {
                                app_id: APP.into(),
                                sk: "release#production#all".into(),
                                version: version.into(),
                                epoch: 0,
                            },
                            kind: if i == 2 {
                                EvidenceKind::Failure
                            } else {
                                EvidenceKind::Attempt
                            },
                            device_id: format!("6a1f0b3e-1111-4222-8333-{device:012}"),
                            network: format!("10.{}.{}.0/24", device / 256 % 256, device % 256),
                            network_cap: 10,
                        }
                    })
                    .collect();
                store
                    .record_evidence(&marks, now - hour * 3600)
                    .await
                    .unwrap();
            }
        }
        drop(store);
        let stores = updraft::runtime::backend::Backend::Embedded { data: data.clone() }
            .operator_stores(false, true)
            .await
            .unwrap();
        let bound = updraft::dashboard::bind(stores, Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let port = bound.listener.local_addr().unwrap().port();
        let token = bound.url.rsplit_once("token=").unwrap().1.to_owned();
        (
            updraft::dashboard::router(bound.dashboard),
            format!("updraft_dashboard_{port}={token}"),
            format!("127.0.0.1:{port}"),
        )
    });
    let refresh = || {
        let req = Request::get(format!("/app/{APP}/live"))
            .header("host", &host)
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap();
        rt.block_on(async {
            let res = router.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap()
        })
    };
    let page = refresh();
    let html = std::str::from_utf8(&page).unwrap();
    assert!(html.contains("data-n=\"336\""), "14 days of points");
    println!("live section: {} bytes", page.len());
    c.bench_function(
        "dashboard live refresh (embedded, 14 days of hourly counts)",
        |b| b.iter(refresh),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
