//! A bounded load test on loopback: 5,000 stats events posted as arrays, 8 at a time, to the
//! real binary on the AWS backend (DynamoDB on moto). Every event must be counted exactly once.

mod support;

use std::time::{Duration, Instant};

use support::aws::{binary_env, pairs};
use support::*;

const EVENTS: usize = 5_000;
const PER_BATCH: usize = 100;
const IN_FLIGHT: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_events_counted_exactly_once() {
    let env = binary_env().await;
    // Events count only for a release the app serves.
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("www");
    write_web_dir(&web, "load 1.0.1");
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
    let server = Server::start(&[], &pairs(&env));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let actions = [
        "set",
        "app_moved_to_foreground",
        "download_complete",
        "update_fail",
        "some_new_action",
    ];

    let batches: Vec<serde_json::Value> = (0..EVENTS / PER_BATCH)
        .map(|b| {
            let events: Vec<serde_json::Value> = (0..PER_BATCH)
                .map(|i| {
                    let n = b * PER_BATCH + i;
                    let mut e = plugin_body(APP_ID, "1.0.0", "1.0.1");
                    e["device_id"] = format!("00000000-0000-4000-8000-{:012}", n % 500).into();
                    e["action"] = actions[n % actions.len()].into();
                    e["timestamp"] = (1_795_910_400_000u64 + n as u64).into();
                    e
                })
                .collect();
            serde_json::Value::Array(events)
        })
        .collect();

    let started = Instant::now();
    let mut pending = batches.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    let mut retried = 0;
    loop {
        while tasks.len() < IN_FLIGHT {
            let Some(batch) = pending.next() else { break };
            let (client, url) = (client.clone(), server.url("/stats"));
            tasks.spawn(async move {
                // The plugin's rule: keep the batch and send it again after a 503 or 429.
                for attempt in 0.. {
                    let res = client.post(&url).json(&batch).send().await.unwrap();
                    match res.status().as_u16() {
                        200 => return attempt,
                        503 | 429 if attempt < 5 => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        other => panic!(
                            "stats answered {other}: {}",
                            res.text().await.unwrap_or_default()
                        ),
                    }
                }
                unreachable!()
            });
        }
        match tasks.join_next().await {
            Some(r) => retried += r.unwrap(),
            None => break,
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{EVENTS} events in {} batches of {PER_BATCH}, {IN_FLIGHT} in flight: {elapsed:?} ({:.0} events/s), {retried} resends",
        EVENTS / PER_BATCH,
        EVENTS as f64 / elapsed.as_secs_f64()
    );

    let out = updraft()
        .args(["stats", "--app", APP_ID, "--json"])
        .envs(pairs(&env))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["actions"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        total, EVENTS as u64,
        "every event counted exactly once: {rows}"
    );
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["actions"]["set"], EVENTS as u64 / actions.len() as u64);
    assert_eq!(row["failures"], EVENTS as u64 / actions.len() as u64);
}
