//! The operator workflow through the real binary, on both backends: the embedded store in a
//! temporary folder, and DynamoDB on moto + S3 on s3s-fs (`UPDRAFT_TEST_MOTO`,
//! `UPDRAFT_TEST_S3S`). Policy kept across releases, `channel set`, per-platform default
//! channels, history, rollback and promote without uploads, `bundles delete`, concurrent
//! changes, `--json` everywhere, and read commands on a missing app.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::*;

/// One backend the binary runs against.
struct Backend {
    env: Vec<(String, String)>,
    tmp: tempfile::TempDir,
    /// The embedded store's folder, or `None` on AWS.
    data: Option<PathBuf>,
    /// The S3 client and bucket on AWS.
    s3: Option<(aws_sdk_s3::Client, String)>,
    /// Who history must name.
    who: String,
}

impl Backend {
    fn embedded() -> Backend {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        Backend {
            env: vec![
                ("UPDRAFT_DATA".into(), data.display().to_string()),
                ("UPDRAFT_BACKEND".into(), "embedded".into()),
                ("USER".into(), "alice".into()),
            ],
            tmp,
            data: Some(data),
            s3: None,
            who: "alice".into(),
        }
    }

    async fn aws() -> Backend {
        let env = support::aws::binary_env().await;
        let bucket = env
            .iter()
            .find(|(k, _)| k == "UPDRAFT_BUCKET")
            .unwrap()
            .1
            .clone();
        let conf = support::aws::config_for(
            &support::aws::emulator("UPDRAFT_TEST_S3S"),
            updraft::runtime::aws::AwsTimeouts::OPERATOR,
        )
        .await;
        Backend {
            env,
            tmp: tempfile::tempdir().unwrap(),
            data: None,
            s3: Some((updraft::runtime::aws::s3_client(&conf), bucket)),
            // What moto's STS answers to GetCallerIdentity.
            who: "arn:aws:sts::123456789012:user/moto".into(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        updraft()
            .args(args)
            .envs(support::aws::pairs(&self.env))
            .current_dir(self.tmp.path())
            .output()
            .unwrap()
    }

    /// Runs with `--json`, asserts success and parses stdout as one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs with `--json` expecting failure: stdout is a JSON error, stderr one sentence.
    fn fails(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: no JSON error ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
        assert_eq!(
            stderr,
            format!("error: {}", err["message"].as_str().unwrap()),
            "the same sentence, once per stream"
        );
        stderr
    }

    /// `updraft release` of a fresh web folder whose bytes depend on `version`.
    fn release(&self, version: &str, channel: &str, extra: &[&str]) -> Value {
        let web = self.tmp.path().join(format!("www-{version}"));
        write_web_dir(&web, &format!("bundle {version}"));
        let web = web.display().to_string();
        let mut args = vec![
            "release",
            "--app",
            APP_ID,
            "--version",
            version,
            "--dir",
            &web,
            "--channel",
            channel,
        ];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    fn serve(&self) -> Server {
        let mut env = support::aws::pairs(&self.env);
        env.push(("UPDRAFT_CACHE_TTL", "0"));
        Server::start(&[], &env)
    }

    /// Stored bundle zips (delta files and manifests beside them are counted by tests/delta.rs).
    async fn objects(&self) -> usize {
        match (&self.data, &self.s3) {
            (Some(data), _) => count_files(&data.join("bundles")),
            (_, Some((s3, bucket))) => s3
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .filter(|o| o.key().is_some_and(|k| k.ends_with(".zip")))
                .count(),
            _ => unreachable!(),
        }
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                count_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|e| e == "zip"))
            }
        })
        .sum()
}

/// An update check as the plugin sends it, on `platform`, asking for `channel` ("" = none).
async fn check(server: &Server, platform: &str, channel: &str) -> Value {
    let mut body = plugin_body(APP_ID, "1.0.0", "builtin");
    body["platform"] = platform.into();
    body["defaultChannel"] = channel.into();
    support::client()
        .post(server.url("/updates"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Asserts the answer is an update to `version` that the plugin would install: the URL
/// downloads a zip whose SHA-256 is the answer's checksum.
async fn assert_installs(answer: &Value, version: &str) {
    assert_eq!(answer["version"], version, "{answer}");
    assert!(answer.get("error").is_none(), "{answer}");
    let zip = support::client()
        .get(answer["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    let zip = zip.bytes().await.unwrap();
    assert_eq!(sha256_hex(&zip), answer["checksum"].as_str().unwrap());
    assert!(zip_names(&zip).contains(&"index.html".to_owned()));
}

async fn policy_channel_set_and_platform_defaults(b: Backend) {
    let first = b.release("1.0.1", "beta", &["--allow-self-assign", "true"]);
    assert_eq!(first["kept_policy"], serde_json::json!([]));
    // A release without policy flags keeps the channel's policy, and says so.
    let second = b.release("1.0.2", "beta", &["--comment", "fixes"]);
    assert_eq!(
        second["kept_policy"],
        serde_json::json!(["allow_self_assign=true"])
    );
    assert_eq!(second["previous_version"], "1.0.1");
    let mut server = b.serve();
    assert_installs(&check(&server, "android", "beta").await, "1.0.2").await;

    // channel set changes policy without touching the bundle.
    let set = b.json(&[
        "channel",
        "set",
        "--app",
        APP_ID,
        "--channel",
        "beta",
        "--allow-emulator",
        "false",
        "--disable-auto-update",
        "minor",
    ]);
    assert_eq!(set[0]["version"], "1.0.2");
    assert_eq!(set[0]["changed"].as_array().unwrap().len(), 2, "{set}");
    let list = b.json(&["channel", "list", "--app", APP_ID]);
    let beta = &list[0];
    assert_eq!(beta["channel"], "beta");
    assert_eq!(beta["platform"], "all");
    assert_eq!(beta["version"], "1.0.2");
    assert_eq!(beta["policy"]["allow_self_assign"], true);
    assert_eq!(beta["policy"]["allow_emulator"], false);
    assert_eq!(beta["policy"]["disable_auto_update"], "minor");
    let mut emulator = plugin_body(APP_ID, "1.0.0", "builtin");
    emulator["is_emulator"] = true.into();
    emulator["defaultChannel"] = "beta".into();
    let refused: Value = support::client()
        .post(server.url("/updates"))
        .json(&emulator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["kind"], "blocked", "{refused}");
    // Releasing again keeps the policy set by channel set.
    let third = b.release("1.0.3", "beta", &["--allow-self-assign", "false"]);
    let kept: Vec<&str> = third["kept_policy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(kept, ["disable_auto_update=minor", "allow_emulator=false"]);
    let item = &b.json(&["channel", "list", "--app", APP_ID])[0];
    assert_eq!(item["policy"]["allow_self_assign"], false, "the flag won");
    assert_eq!(
        check(&server, "android", "beta").await["error"],
        "no_channel"
    );

    // Per-platform default channels: iOS devices asking for nothing get ios-stable.
    b.release("2.0.0", "production", &[]);
    b.release("1.5.0", "ios-stable", &[]);
    let set = b.json(&[
        "app",
        "set",
        "--app",
        APP_ID,
        "--default-channel",
        "ios-stable",
        "--platform",
        "ios",
    ]);
    assert_eq!(set["attribute"], "default_channel_ios");
    let ios = check(&server, "ios", "").await;
    assert_installs(&ios, "1.5.0").await;
    let android = check(&server, "android", "").await;
    assert_eq!(android["version"], "2.0.0", "{android}");
    let apps = b.json(&["app", "list"]);
    assert_eq!(apps[0]["app_id"], APP_ID);
    assert_eq!(apps[0]["default_channel"], "production");
    assert_eq!(apps[0]["platform_default_channels"]["ios"], "ios-stable");
    assert!(server.alive());
}

async fn history_rollback_promote_and_bundles(b: Backend) {
    let server = b.serve();
    let v1 = b.release("1.0.1", "beta", &[]);
    let v2 = b.release("1.0.2", "beta", &[]);
    assert_eq!(b.objects().await, 2);
    // A QA device is put on beta by the operator (no history: not a channel change).
    b.json(&[
        "device",
        "set-channel",
        "--app",
        APP_ID,
        "--device",
        DEVICE_ID,
        "--channel",
        "beta",
    ]);
    assert_installs(&check(&server, "android", "").await, "1.0.2").await;

    let back = b.json(&["rollback", "--app", APP_ID, "--channel", "beta"]);
    assert_eq!(
        (back["from_version"].as_str(), back["to_version"].as_str()),
        (Some("1.0.2"), Some("1.0.1"))
    );
    let answer = check(&server, "android", "").await;
    assert_installs(&answer, "1.0.1").await;
    assert_eq!(
        answer["checksum"], v1["checksum"],
        "the bundle released as 1.0.1"
    );

    b.json(&[
        "device",
        "unset-channel",
        "--app",
        APP_ID,
        "--device",
        DEVICE_ID,
    ]);
    let promoted = b.json(&[
        "promote",
        "--app",
        APP_ID,
        "--from",
        "beta",
        "--to",
        "production",
    ]);
    assert_eq!(promoted["to_version"], "1.0.1");
    assert_installs(&check(&server, "android", "").await, "1.0.1").await;
    assert_eq!(
        b.objects().await,
        2,
        "rollback and promote uploaded nothing"
    );

    b.json(&["pause", "--app", APP_ID, "--channel", "production"]);
    assert_eq!(
        check(&server, "android", "").await["error"],
        "release_paused"
    );
    b.json(&["resume", "--app", APP_ID, "--channel", "production"]);
    assert_installs(&check(&server, "android", "").await, "1.0.1").await;

    let history = b.json(&["history", "--app", APP_ID]);
    let got: Vec<(String, String, Value, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["who"], b.who.as_str(), "{e}");
            assert_eq!(e["platform"], "all");
            (
                e["action"].as_str().unwrap().to_owned(),
                e["channel"].as_str().unwrap().to_owned(),
                e["from_version"].clone(),
                e["to_version"].clone(),
            )
        })
        .collect();
    let e = |a: &str, c: &str, from: Option<&str>, to: &str| {
        (
            a.to_owned(),
            c.to_owned(),
            from.map_or(Value::Null, Value::from),
            Value::from(to),
        )
    };
    assert_eq!(
        got,
        [
            e("resume", "production", Some("1.0.1"), "1.0.1"),
            e("pause", "production", Some("1.0.1"), "1.0.1"),
            e("promote", "production", None, "1.0.1"),
            e("rollback", "beta", Some("1.0.2"), "1.0.1"),
            e("release", "beta", Some("1.0.1"), "1.0.2"),
            e("release", "beta", None, "1.0.1"),
        ],
        "newest first, one entry per change"
    );
    let beta_only = b.json(&[
        "history",
        "--app",
        APP_ID,
        "--channel",
        "beta",
        "--limit",
        "2",
    ]);
    assert_eq!(beta_only.as_array().unwrap().len(), 2);
    assert_eq!(beta_only[0]["action"], "rollback");

    // Rolling back again goes to what served before 1.0.1: nothing in history; --to names it.
    let no_earlier = b.fails(&["rollback", "--app", APP_ID, "--channel", "production"]);
    assert!(no_earlier.contains("--to"), "{no_earlier}");
    let refused = b.fails(&[
        "rollback",
        "--app",
        APP_ID,
        "--channel",
        "beta",
        "--to",
        "0.9.0",
    ]);
    assert!(refused.contains("not stored"), "{refused}");

    // Bundles: list shows who serves what; a served bundle cannot be deleted.
    let bundles = b.json(&["bundles", "list", "--app", APP_ID]);
    let rows = bundles.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["version"], "1.0.1");
    assert_eq!(
        rows[0]["served_by"],
        serde_json::json!(["beta/all", "production/all"])
    );
    assert_eq!(rows[0]["checksum"], v1["checksum"]);
    assert_eq!(rows[1]["served_by"], serde_json::json!([]));
    assert!(rows[1]["size"].as_u64().unwrap() > 0 && rows[1]["uploaded_at"].is_string());
    let served = b.fails(&["bundles", "delete", "--app", APP_ID, "--version", "1.0.1"]);
    assert!(
        served.contains("served by beta/all, production/all"),
        "{served}"
    );
    assert_eq!(b.objects().await, 2);
    let deleted = b.json(&["bundles", "delete", "--app", APP_ID, "--version", "1.0.2"]);
    assert_eq!(deleted["bundle"], v2["bundle"]);
    assert_eq!(b.objects().await, 1);
    let gone = b.fails(&[
        "rollback",
        "--app",
        APP_ID,
        "--channel",
        "beta",
        "--to",
        "1.0.2",
    ]);
    assert!(gone.contains("not stored"), "{gone}");
    assert_installs(&check(&server, "android", "").await, "1.0.1").await;
}

async fn concurrent_changes_on_one_channel(b: Backend) {
    b.release("1.0.1", "beta", &[]);
    let revision = b.json(&["channel", "list", "--app", APP_ID])[0]["revision"]
        .as_u64()
        .unwrap();
    let web = b.tmp.path().join("www-race");
    write_web_dir(&web, "race");
    let web = web.display().to_string();
    let rev = revision.to_string();
    // Both looked at the same revision: exactly one of them wins.
    let (set, release) = std::thread::scope(|s| {
        let set = s.spawn(|| {
            b.run(&[
                "channel",
                "set",
                "--app",
                APP_ID,
                "--channel",
                "beta",
                "--allow-dev",
                "false",
                "--expect-revision",
                &rev,
            ])
        });
        let release = s.spawn(|| {
            b.run(&[
                "release",
                "--app",
                APP_ID,
                "--version",
                "1.0.2",
                "--dir",
                &web,
                "--channel",
                "beta",
                "--expect-revision",
                &rev,
            ])
        });
        (set.join().unwrap(), release.join().unwrap())
    });
    assert!(
        set.status.success() != release.status.success(),
        "exactly one wins: set {:?} release {:?}",
        String::from_utf8_lossy(&set.stderr),
        String::from_utf8_lossy(&release.stderr)
    );
    let loser = if set.status.success() { &release } else { &set };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("changed by someone else"), "{err}");

    // Without --expect-revision, racing processes each read and write conditionally: every
    // one either applies (with its history entry) or gets a conflict.
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4)
            .map(|i| {
                let b = &b;
                s.spawn(move || {
                    let cooldown = (i * 100).to_string();
                    b.run(&[
                        "channel",
                        "set",
                        "--app",
                        APP_ID,
                        "--channel",
                        "beta",
                        "--auto-pause-cooldown",
                        &cooldown,
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = outs.iter().filter(|o| o.status.success()).count();
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("changed by someone else"), "{err}");
    }
    assert!(won >= 1);
    let history = b.json(&["history", "--app", APP_ID]);
    let entries = history.as_array().unwrap();
    assert_eq!(
        entries.len(),
        1 + 1 + won,
        "one entry per applied change: {history}"
    );
    let list = b.json(&["channel", "list", "--app", APP_ID]);
    let newest = entries[0]["detail"].as_str().unwrap();
    let cooldown = list[0]["policy"]["auto_pause_cooldown"].as_u64().unwrap();
    assert!(
        newest.ends_with(&format!("-> {cooldown}")),
        "{newest} vs {cooldown}"
    );
    assert_eq!(
        list[0]["revision"].as_u64().unwrap(),
        revision + 1 + won as u64
    );
}

/// Every read command on a missing app fails with one sentence naming the apps, creates
/// nothing, and prints a JSON error with --json.
async fn read_commands_on_a_missing_app(b: Backend) {
    b.release("1.0.1", "production", &[]);
    let typo = "com.exmaple.app";
    let reads: Vec<Vec<&str>> = vec![
        vec!["stats", "--app", typo],
        vec!["history", "--app", typo],
        vec!["channel", "list", "--app", typo],
        vec!["bundles", "list", "--app", typo],
        vec!["device", "show", "--app", typo, "--device", DEVICE_ID],
        vec!["rollback", "--app", typo, "--channel", "production"],
        vec!["pause", "--app", typo],
    ];
    for args in &reads {
        let err = b.fails(args);
        assert!(
            err.contains("no app com.exmaple.app; apps here: com.example.app"),
            "{args:?}: {err}"
        );
    }
    // The commands that succeed print one JSON document too.
    for args in [
        vec!["stats", "--app", APP_ID],
        vec!["app", "list"],
        vec!["device", "show", "--app", APP_ID, "--device", DEVICE_ID],
        vec!["bundles", "list", "--app", APP_ID],
    ] {
        b.json(&args);
    }
    assert!(!b.tmp.path().join("updraft-data").exists());
    if b.data.is_none() {
        // A table that does not exist is named as such, with the setting to check.
        let err = b.fails(&["history", "--app", APP_ID, "--table", "no-such-table"]);
        assert!(
            err.contains("does not exist") && err.contains("UPDRAFT_TABLE"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn policy_channel_set_and_platform_defaults_embedded() {
    policy_channel_set_and_platform_defaults(Backend::embedded()).await;
}

#[tokio::test]
async fn policy_channel_set_and_platform_defaults_aws() {
    policy_channel_set_and_platform_defaults(Backend::aws().await).await;
}

#[tokio::test]
async fn history_rollback_promote_and_bundles_embedded() {
    history_rollback_promote_and_bundles(Backend::embedded()).await;
}

#[tokio::test]
async fn history_rollback_promote_and_bundles_aws() {
    history_rollback_promote_and_bundles(Backend::aws().await).await;
}

#[tokio::test]
async fn concurrent_changes_on_one_channel_embedded() {
    concurrent_changes_on_one_channel(Backend::embedded()).await;
}

#[tokio::test]
async fn concurrent_changes_on_one_channel_aws() {
    concurrent_changes_on_one_channel(Backend::aws().await).await;
}

#[tokio::test]
async fn read_commands_on_a_missing_app_embedded() {
    read_commands_on_a_missing_app(Backend::embedded()).await;
}

#[tokio::test]
async fn read_commands_on_a_missing_app_aws() {
    read_commands_on_a_missing_app(Backend::aws().await).await;
}

/// With no store at all, read (and change) commands fail and leave no folder behind.
#[test]
fn commands_on_a_missing_store_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        vec!["stats", "--app", APP_ID],
        vec!["history", "--app", APP_ID],
        vec!["channel", "list", "--app", APP_ID],
        vec!["app", "list"],
        vec!["bundles", "list", "--app", APP_ID],
        vec!["device", "show", "--app", APP_ID, "--device", DEVICE_ID],
        vec!["device", "mark-overrides"],
        vec![
            "channel",
            "set",
            "--app",
            APP_ID,
            "--channel",
            "beta",
            "--allow-dev",
            "true",
        ],
        vec!["rollback", "--app", APP_ID, "--channel", "beta"],
        vec!["pause", "--app", APP_ID],
    ] {
        let out = updraft()
            .args(&args)
            .arg("--json")
            .env_remove("UPDRAFT_DATA")
            .env_remove("UPDRAFT_BACKEND")
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("no Updraft store in ./updraft-data"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(cwd.path()).unwrap().count(),
            0,
            "{args:?} created something"
        );
    }
}

/// An AWS credentials failure is one sentence naming AWS_PROFILE and `aws configure`.
#[test]
fn missing_aws_credentials_are_one_sentence() {
    let home = tempfile::tempdir().unwrap();
    let out = updraft()
        .args([
            "history",
            "--backend",
            "aws",
            "--table",
            "t",
            "--devices-table",
            "d",
        ])
        .args(["--app", APP_ID])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("RUST_LOG", "off")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Never reached: the SDK finds no credentials first.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: AWS credentials are missing or were refused; set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or run `aws configure`"
    );
}
