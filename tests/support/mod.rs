//! Shared helpers of the integration tests: the plugin's request body, web folders, the
//! real `updraft` binary run as a child process, an HTTP client; `aws` for the tests that
//! talk to AWS-wire emulators.
#![allow(dead_code)]

pub mod aws;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub const APP_ID: &str = "com.example.app";
pub const DEVICE_ID: &str = "6a1f0b3e-1111-4222-8333-9c2d00000000";

/// An update check exactly as plugin 8.51.23 sends it on Android (protocol.md §1).
pub fn plugin_body(app_id: &str, version_build: &str, version_name: &str) -> serde_json::Value {
    serde_json::json!({
        "platform": "android",
        "device_id": DEVICE_ID,
        "app_id": app_id,
        "custom_id": "",
        "version_build": version_build,
        "version_code": "12",
        "version_os": "14",
        "version_name": version_name,
        "plugin_version": "8.51.23",
        "is_emulator": false,
        "is_prod": true,
        "install_source": "google_play",
        "defaultChannel": ""
    })
}

/// A built web app whose code calls notifyAppReady(); `marker` makes its bytes unique.
pub fn write_web_dir(dir: &Path, marker: &str) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><p>{marker}</p><script src=\"assets/app.js\"></script>"),
    )
    .unwrap();
    std::fs::write(
        dir.join("assets/app.js"),
        "window.Capacitor.Plugins.CapacitorUpdater.notifyAppReady();",
    )
    .unwrap();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Entry names of a zip.
pub fn zip_names(bytes: &[u8]) -> Vec<String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| z.by_index(i).unwrap().name().to_owned())
        .collect()
}

pub fn updraft() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_updraft"));
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs `updraft <args>` to completion.
pub fn run(args: &[&str]) -> Output {
    updraft().args(args).output().unwrap()
}

/// `updraft release --data <data> --app com.example.app --version <version> [--dir <dir>] <extra…>`.
pub fn release(data: &Path, version: &str, dir: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = updraft();
    cmd.arg("release")
        .arg("--data")
        .arg(data)
        .args(["--app", APP_ID, "--version", version]);
    if let Some(d) = dir {
        cmd.arg("--dir").arg(d);
    }
    cmd.args(extra).output().unwrap()
}

/// Asserts a command succeeded, showing what it printed on stderr otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `updraft serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// e.g. http://127.0.0.1:41234
    pub origin: String,
}

impl Server {
    /// Starts `updraft serve --addr 127.0.0.1:0` with extra args/env and waits for its URL.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with_stderr(args, env, Stdio::inherit())
    }

    /// `start`, with the server's logs (stderr) sent to `stderr`.
    pub fn start_with_stderr(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut cmd = updraft();
        cmd.arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .args(args)
            .envs(env.iter().copied());
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("updateUrl: ") {
                    let _ = tx.send(url.trim_end_matches("/updates").to_owned());
                }
            }
        });
        let origin = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("updraft serve printed no updateUrl");
        Server { child, origin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `state` on 127.0.0.1 as `updraft serve` does (each request's source is its TCP
/// peer); the origin to reach it at.
pub async fn serve(state: updraft::api::AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app =
        updraft::api::source::with_source(updraft::api::router(std::sync::Arc::new(state)), false);
    tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .into_future(),
    );
    origin
}

/// An HTTP client for talking to a server under test.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
