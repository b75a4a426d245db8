//! Staged rollouts on the embedded store: releases and rollout commands through the binary,
//! update checks and stats in-process through the real router (100,000 synthetic devices take
//! seconds that way), the health gate's pass with a clock the test moves, and `explain`.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use support::*;
use tower::ServiceExt;
use updraft::api::router;
use updraft::api::source::SourceIp;
use updraft::bundles::local::LocalBundles;
use updraft::clock::{Clock, ManualClock, SystemClock};
use updraft::ops::rollouts::tick;
use updraft::runtime::backend::Backend;
use updraft::store::embedded::EmbeddedStore;

const N: u32 = 100_000;

fn device(i: u32) -> String {
    format!("0b5e0000-0000-4000-8000-{i:012}")
}

/// The router of `updraft serve` on the data folder, reading the store on every check.
fn app(data: &Path) -> axum::Router {
    let store = EmbeddedStore::open(data).unwrap();
    let bundles = LocalBundles::open(data, Duration::from_secs(60)).unwrap();
    router(Arc::new(updraft::runtime::backend::embedded_state(
        store,
        bundles,
        Duration::ZERO,
    )))
}

async fn post(
    app: &axum::Router,
    path: &str,
    body: &serde_json::Value,
    ip: &str,
) -> serde_json::Value {
    let mut req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("host", "updraft.test")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(SourceIp(ip.parse::<IpAddr>().unwrap()));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An update check of `device` running `version_name`; `Some(version)` when the plugin
/// would download (a `version` with a `url`), `None` when it would stay (an `error`).
async fn check(app: &axum::Router, device: &str, version_name: &str) -> Option<String> {
    let mut body = plugin_body(APP_ID, "1.0.0", version_name);
    body["device_id"] = device.into();
    let a = post(app, "/updates", &body, "198.51.100.7").await;
    match (a.get("url"), a.get("error")) {
        (Some(_), None) => Some(a["version"].as_str().unwrap().to_owned()),
        (None, Some(_)) => None,
        _ => panic!("not an answer the plugin understands: {a}"),
    }
}

/// Devices checked through `POST /updates` itself; the rest of the 100,000 go through the
/// same decision function directly, on the snapshot the router reads (debug builds answer a
/// few thousand HTTP checks per second, not 100,000).
const THROUGH_HTTP: u32 = 2_000;

/// The devices of 0..N that are offered `version` when they run `running`, as the router
/// answers them (first `THROUGH_HTTP`) and as `decide_update` does on the live store (all):
/// both must agree.
async fn cohort(data: &Path, running: &str, version: &str) -> BTreeSet<u32> {
    use updraft::domain::decide::{Decision, decide_update};
    use updraft::domain::protocol::parse_update_request;
    use updraft::store::ReleaseStore;
    let store = EmbeddedStore::open(data).unwrap();
    let snap = store.load_app(APP_ID).await.unwrap().unwrap();
    let mut inside = BTreeSet::new();
    for i in 0..N {
        let mut body = plugin_body(APP_ID, "1.0.0", running);
        body["device_id"] = device(i).into();
        let bytes = body.to_string().into_bytes();
        let req = parse_update_request(&bytes).unwrap();
        if let Decision::Offer { release, .. } = decide_update(&req, Some(&snap), None)
            && release.version_text == version
        {
            inside.insert(i);
        }
    }
    let http = app(data);
    for i in 0..THROUGH_HTTP {
        let offered = check(&http, &device(i), running).await;
        assert_eq!(
            offered.as_deref() == Some(version),
            inside.contains(&i),
            "device {i}"
        );
    }
    inside
}

fn cli(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = updraft()
        .args(args)
        .arg("--data")
        .arg(data)
        .args(["--app", APP_ID, "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn released(data: &Path, web: &Path, version: &str, extra: &[&str]) {
    write_web_dir(web, version);
    assert_ok(&release(data, version, Some(web), extra));
}

#[tokio::test]
async fn cohorts_are_sticky_sized_and_independent() {
    let dir = tempfile::tempdir().unwrap();
    let (data, web) = (dir.path().join("data"), dir.path().join("web"));
    released(&data, &web, "1.0.1", &[]);
    released(&data, &web, "1.0.2", &["--rollout", "5"]);

    let five = cohort(&data, "1.0.1", "1.0.2").await;
    let share = five.len() as f64 / f64::from(N);
    assert!((0.045..=0.055).contains(&share), "5 % rollout got {share}");

    cli(&data, &["rollout", "set", "--percent", "25"]);
    let quarter = cohort(&data, "1.0.1", "1.0.2").await;
    let share = quarter.len() as f64 / f64::from(N);
    assert!((0.24..=0.26).contains(&share), "25 % rollout got {share}");
    assert!(
        five.is_subset(&quarter),
        "raising the share keeps every device in"
    );

    // A second rollout (its own id) picks its own cohort: the overlap is what independence
    // predicts, within 10 % relative.
    cli(&data, &["rollout", "abort"]);
    released(&data, &web, "1.0.3", &["--rollout", "25"]);
    let second = cohort(&data, "1.0.1", "1.0.3").await;
    let overlap = quarter.intersection(&second).count() as f64;
    let expected = quarter.len() as f64 * second.len() as f64 / f64::from(N);
    assert!(
        (overlap - expected).abs() <= 0.1 * expected,
        "overlap {overlap}, independence predicts {expected}"
    );
}

/// An update check against a running `updraft serve`, judged as `check` judges it.
async fn served(server: &Server, device: &str, version_name: &str) -> Option<String> {
    let mut body = plugin_body(APP_ID, "1.0.0", version_name);
    body["device_id"] = device.into();
    let a: serde_json::Value = reqwest::Client::new()
        .post(server.url("/updates"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match (a.get("url"), a.get("error")) {
        (Some(_), None) => Some(a["version"].as_str().unwrap().to_owned()),
        (None, Some(_)) => None,
        _ => panic!("not an answer the plugin understands: {a}"),
    }
}

#[tokio::test]
async fn pause_abort_and_complete_as_the_plugin_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let (data, web) = (dir.path().join("data"), dir.path().join("web"));
    released(&data, &web, "1.0.1", &[]);
    released(&data, &web, "1.0.2", &["--rollout", "50"]);
    let server = Server::start(
        &[
            "--data",
            data.to_str().unwrap(),
            "--cache-ttl",
            "0",
            "--rollout-interval",
            "0",
        ],
        &[],
    );
    let mut inside = None;
    let mut outside = None;
    for i in 0..100 {
        match served(&server, &device(i), "1.0.1").await {
            Some(v) if v == "1.0.2" => inside = inside.or(Some(i)),
            None => outside = outside.or(Some(i)),
            other => panic!("{other:?}"),
        }
    }
    let (inside, outside) = (device(inside.unwrap()), device(outside.unwrap()));
    assert_eq!(
        served(&server, &inside, "1.0.2").await,
        None,
        "up to date on the rollout version"
    );

    let paused = cli(&data, &["rollout", "pause"]);
    assert_eq!(paused["changed"], true);
    assert_eq!(
        served(&server, &inside, "1.0.1").await,
        None,
        "no new device enters"
    );
    assert_eq!(
        served(&server, &inside, "1.0.2").await,
        None,
        "on it: stays, never downgraded"
    );
    assert_eq!(served(&server, &outside, "1.0.1").await, None);

    cli(&data, &["rollout", "resume"]);
    assert_eq!(
        served(&server, &inside, "1.0.1").await.as_deref(),
        Some("1.0.2")
    );

    cli(&data, &["rollout", "abort"]);
    assert_eq!(
        served(&server, &inside, "1.0.2").await.as_deref(),
        Some("1.0.1"),
        "abort: stable again"
    );
    assert_eq!(served(&server, &inside, "1.0.1").await, None);

    // A new rollout, completed: everyone is offered it, and it is the stable version.
    released(&data, &web, "1.0.3", &["--rollout", "1"]);
    cli(&data, &["rollout", "complete"]);
    assert_eq!(
        served(&server, &outside, "1.0.1").await.as_deref(),
        Some("1.0.3")
    );
    assert_eq!(
        served(&server, &inside, "1.0.2").await.as_deref(),
        Some("1.0.3")
    );
    let list = cli(&data, &["channel", "list"]);
    assert!(list.to_string().contains("1.0.3"), "{list}");
    let out = updraft()
        .args(["rollout", "status", "--data"])
        .arg(&data)
        .args(["--app", APP_ID])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no rollout after complete");

    let history = cli(&data, &["history"]);
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "rollout-start",
        "rollout-pause",
        "rollout-resume",
        "rollout-abort",
        "rollout-complete",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
}

/// Healthy installs: `count` devices, spread over networks 10.<net>.<n>.0/24, each a `set`
/// of `version` (after an update check); `fail` devices instead report `update_fail`.
async fn report(
    app: &axum::Router,
    version: &str,
    devices: std::ops::Range<u32>,
    action: &str,
    network: impl Fn(u32) -> String,
) {
    for i in devices {
        let mut e = plugin_body(APP_ID, "1.0.0", version);
        e["device_id"] = device(i).into();
        e["action"] = action.into();
        e["old_version_name"] = "1.0.1".into();
        e["timestamp"] = 1_795_910_400_000u64.into();
        let a = post(app, "/stats", &serde_json::json!([e]), &network(i)).await;
        assert_eq!(a["status"], "ok", "{a}");
    }
}

#[tokio::test]
async fn the_gate_advances_while_healthy_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, web) = (dir.path().join("data"), dir.path().join("web"));
    released(&data, &web, "1.0.1", &[]);
    released(
        &data,
        &web,
        "1.0.2",
        &[
            "--rollout",
            "1",
            "--steps",
            "1,5,25,100",
            "--step-every",
            "60",
            "--min-devices",
            "40",
            "--max-failure-rate",
            "0.1",
        ],
    );
    let mut stores = Backend::Embedded { data: data.clone() }
        .operator_stores(false, true)
        .await
        .unwrap();
    let clock = ManualClock::at(SystemClock.now());
    stores.clock = clock.clone();
    let start = clock.now();
    let a = app(&data);
    // 60 devices from 12 networks install it; networks count at most 10 devices each.
    report(&a, "1.0.2", 0..60, "set", |i| format!("10.{}.0.1", i % 12)).await;
    clock.set(start + 1);
    let rows = tick(&stores, Some(APP_ID)).await.unwrap();
    assert_eq!(
        rows[0].action.as_str(),
        "hold",
        "{rows:?}: the step is not due yet"
    );
    let mut shares = vec![];
    for k in 1..=4 {
        clock.set(start + 61 * k);
        let rows = tick(&stores, Some(APP_ID)).await.unwrap();
        assert_eq!(rows.len(), 1);
        shares.push((rows[0].percent, rows[0].action.as_str().to_owned()));
    }
    assert_eq!(
        shares,
        vec![
            (1.0, "step".to_owned()),
            (5.0, "step".to_owned()),
            (25.0, "step".to_owned()),
            (100.0, "complete".to_owned())
        ]
    );
    assert_eq!(
        check(&app(&data), &device(999), "1.0.1").await.as_deref(),
        Some("1.0.2")
    );
    let history = cli(&data, &["history"]).to_string();
    assert!(
        history.contains("step 1% -> 5%") && history.contains("0 of 60 devices failed"),
        "{history}"
    );
    assert!(history.contains("updraft (automatic)"));
}

#[tokio::test]
async fn the_gate_halts_on_failures_from_many_networks_not_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let (data, web) = (dir.path().join("data"), dir.path().join("web"));
    released(&data, &web, "1.0.1", &[]);
    released(
        &data,
        &web,
        "1.0.2",
        &[
            "--rollout",
            "50",
            "--steps",
            "50,100",
            "--step-every",
            "60",
            "--on-failure",
            "abort",
        ],
    );
    let stores = Backend::Embedded { data: data.clone() }
        .operator_stores(false, true)
        .await
        .unwrap();
    let a = app(&data);
    // A forger on one network names 500 device ids that all fail: capped, one network.
    report(&a, "1.0.2", 0..500, "update_fail", |_| "203.0.113.9".into()).await;
    let rows = tick(&stores, Some(APP_ID)).await.unwrap();
    assert_eq!(rows[0].action.as_str(), "hold", "{rows:?}");
    assert_eq!((rows[0].devices, rows[0].failing_networks), (10, 1));

    // Real failures: 2 devices each on 30 networks.
    report(&a, "1.0.2", 1000..1060, "update_fail", |i| {
        format!("10.{}.7.1", i % 30)
    })
    .await;
    let rows = tick(&stores, Some(APP_ID)).await.unwrap();
    assert_eq!(rows[0].action.as_str(), "abort", "{rows:?}");
    let a = app(&data);
    assert_eq!(
        check(&a, &device(5), "1.0.2").await.as_deref(),
        Some("1.0.1")
    );
    let history = cli(&data, &["history"]);
    let last = &history[0];
    assert_eq!(last["action"], "rollout-abort", "{history}");
    let detail = last["detail"].as_str().unwrap();
    assert!(
        detail.contains("step 50%")
            && detail.contains("70 of 70 devices failed, from 31 networks")
            && detail.contains("aborted"),
        "{detail}"
    );
}

#[tokio::test]
async fn explain_names_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (data, web) = (dir.path().join("data"), dir.path().join("web"));
    released(&data, &web, "1.0.1", &[]);
    released(&data, &web, "2.0.0", &["--channel", "beta"]);
    released(&data, &web, "1.0.2", &["--rollout", "50"]);
    let explain = |device: &str, name: &str, build: &str, extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--device",
            device,
            "--platform",
            "android",
            "--version-name",
            name,
            "--version-build",
            build,
        ];
        args.extend_from_slice(extra);
        cli(&data, &args)
    };
    let a = app(&data);
    let mut inside = None;
    let mut outside = None;
    for i in 0..100 {
        match check(&a, &device(i), "1.0.1").await {
            Some(_) => inside = inside.or(Some(device(i))),
            None => outside = outside.or(Some(device(i))),
        }
    }
    let (inside, outside) = (inside.unwrap(), outside.unwrap());
    let rules = |v: &serde_json::Value| -> Vec<String> {
        v["trace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s["rule"].as_str().unwrap(),
                    s["outcome"].as_str().unwrap()
                )
            })
            .collect()
    };

    let offered = explain(&inside, "1.0.1", "1.0.0", &[]);
    assert_eq!(
        (offered["decision"].as_str(), offered["version"].as_str()),
        (Some("offer"), Some("1.0.2"))
    );
    assert!(
        rules(&offered)
            .iter()
            .any(|r| r.starts_with("rollout: 1.0.2 at 50%") && r.contains("in: rollout version")),
        "{offered}"
    );

    let out = explain(&outside, "1.0.1", "1.0.0", &[]);
    assert_eq!(
        (out["decision"].as_str(), out["error"].as_str()),
        (Some("up_to_date"), Some("no_new_version_available"))
    );
    assert!(
        rules(&out)
            .iter()
            .any(|r| r.contains("outside: stable version")),
        "{out}"
    );

    let current = explain(&inside, "1.0.2", "1.0.0", &[]);
    assert_eq!(current["decision"], "up_to_date");
    assert!(
        rules(&current)
            .iter()
            .any(|r| r.starts_with("up_to_date: the device runs 1.0.2"))
    );

    let gated = explain(&inside, "builtin", "1.0.0", &["--channel", "beta"]);
    assert_eq!(
        gated["decision"], "failed",
        "{gated}: beta does not allow self-assignment"
    );
    assert_eq!(gated["error"], "no_channel");
    cli(
        &data,
        &[
            "channel",
            "set",
            "--channel",
            "beta",
            "--allow-self-assign",
            "true",
        ],
    );
    let gated = explain(&inside, "builtin", "1.0.0", &["--channel", "beta"]);
    assert_eq!(
        (gated["decision"].as_str(), gated["error"].as_str()),
        (Some("blocked"), Some("disable_auto_update_to_major")),
        "{gated}"
    );
    assert!(
        rules(&gated)
            .iter()
            .any(|r| r.starts_with("version_gate: blocked"))
    );

    cli(&data, &["rollout", "pause"]);
    let paused = explain(&inside, "1.0.1", "1.0.0", &[]);
    assert_eq!(paused["decision"], "up_to_date");
    assert!(
        rules(&paused)
            .iter()
            .any(|r| r.contains("is paused at 50%: no new device enters")),
        "{paused}"
    );

    // Text, for people: the rule table.
    let out = updraft()
        .args(["explain", "--data"])
        .arg(&data)
        .args([
            "--app",
            APP_ID,
            "--device",
            &inside,
            "--platform",
            "android",
            "--version-name",
            "1.0.1",
            "--version-build",
            "1.0.0",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("RULE")
            && text.contains("rollout")
            && text.contains("no_new_version_available"),
        "{text}"
    );
    // A bad device id is the server's own 400, explained in one sentence.
    let out = updraft()
        .args(["explain", "--data"])
        .arg(&data)
        .args([
            "--app",
            APP_ID,
            "--device",
            "nope",
            "--platform",
            "android",
            "--version-build",
            "1.0.0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a UUID"));
}
