//! `updraft dashboard` in a real browser: Debian's headless Chromium driven over the W3C
//! WebDriver protocol (chromedriver, `UPDRAFT_TEST_CHROMEDRIVER`), on both backends (the
//! embedded store, and DynamoDB on moto + S3 on s3s-fs). The page is refused without the
//! token; a seeded app with a rollout and hourly evidence shows its channels, versions and a
//! curve with one point per hour; pausing from the page (after its confirmation) makes the next
//! update check `blocked` and history names the operator; a change from the CLI shows up by
//! itself; a cross-origin POST is refused; the public API has none of its routes; a real
//! `/stats` install moves the curve. Screenshots go to `target/dashboard-screenshots/`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use updraft::domain::evidence::{EvidenceKey, EvidenceKind, EvidenceMark};
use updraft::domain::item::AttrValue;
use updraft::store::ItemWriter;

/// A minimal W3C WebDriver client: the dozen calls these tests make, over reqwest.
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// The prefix of a web element reference's key in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-";

impl Browser {
    async fn start() -> Browser {
        let driver_path = std::env::var("UPDRAFT_TEST_CHROMEDRIVER").unwrap_or_else(|_| {
            panic!("UPDRAFT_TEST_CHROMEDRIVER is not set: run the tests with scripts/test.sh, which installs chromium-driver")
        });
        let port = support::aws::closed_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to be ready", || async {
            let r = http.get(format!("{base}/status")).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let binary = std::env::var("UPDRAFT_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn source(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/source", None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn url(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/url", None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The elements matching a CSS selector (none: empty).
    async fn all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                // The web element reference: the object's one member.
                e.as_object()?
                    .iter()
                    .find(|(k, _)| k.starts_with(ELEMENT))
                    .and_then(|(_, v)| v.as_str().map(str::to_owned))
            })
            .collect()
    }

    /// The first element matching `css`, waiting for it to appear.
    async fn find(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.all(css).await.into_iter().next() {
                return e;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "no element {css} on {}: {}",
                    self.url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{e}/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The value of a script run in the page.
    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
        .await
    }

    async fn window(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's Chromium goes with chromedriver.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Polls `f` every 100 ms until it gives a value; fails after 30 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `updraft dashboard --json`, killed when dropped.
struct Dashboard {
    child: Child,
    url: String,
    origin: String,
    token: String,
}

impl Dashboard {
    fn start(env: &[(&str, &str)], cwd: &std::path::Path) -> Dashboard {
        Self::start_with(env, cwd, &[])
    }

    fn start_with(env: &[(&str, &str)], cwd: &std::path::Path, extra: &[&str]) -> Dashboard {
        let mut child = updraft()
            .args(["dashboard", "--json"])
            .args(extra)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("dashboard --json printed {line:?}: {e}"));
        let url = v["url"].as_str().unwrap().to_owned();
        let (origin, token) = url.split_once("/?token=").unwrap();
        Dashboard {
            origin: origin.to_owned(),
            token: token.to_owned(),
            url,
            child,
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    env: Vec<(String, String)>,
    tmp: tempfile::TempDir,
    who: String,
    name: &'static str,
}

impl Setup {
    fn run(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = updraft()
            .args(&all)
            .envs(support::aws::pairs(&self.env))
            .current_dir(self.tmp.path())
            .output()
            .unwrap();
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn release(&self, version: &str, channel: &str, extra: &[&str]) {
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
        self.run(&args);
    }
}

fn mark(sk: &str, version: &str, epoch: u64, kind: EvidenceKind, device: usize) -> EvidenceMark {
    EvidenceMark {
        key: EvidenceKey {
            app_id: APP_ID.into(),
            sk: sk.into(),
            version: version.into(),
            epoch,
        },
        kind,
        device_id: format!("6a1f0b3e-1111-4222-8333-{device:012}"),
        network: format!("10.{}.{}.0/24", device / 256, device % 256),
        network_cap: 10,
    }
}

/// How long before the test's start the production rollout began: its curve spans six hours.
const ROLLOUT_AGE: u64 = 5 * 3600;

/// Hourly evidence, under the keys devices' reports are filed under: the production rollout
/// of 1.1.0 (its own epoch, `rollout_epoch`, so the gate reads it) with 3 devices five hours
/// ago, 2 (one failing) three hours ago and 1 now; production's stable 1.0.1 with a few dozen
/// devices an hour (one failing); beta's 1.1.0 with a few. Staging has none.
fn seeded_marks(now: u64, rollout_epoch: u64) -> Vec<(u64, Vec<EvidenceMark>)> {
    use EvidenceKind::*;
    let prod = "release#production#all";
    let rollout = |kind, d| mark(prod, "1.1.0", rollout_epoch, kind, d);
    let mut hours = vec![
        (
            now - 5 * 3600,
            (1..=3).map(|d| rollout(Attempt, d)).collect(),
        ),
        (
            now - 3 * 3600,
            vec![
                rollout(Attempt, 4),
                rollout(Attempt, 5),
                rollout(Failure, 5),
            ],
        ),
        // Device 1 again: counted once by the evidence rule, so this hour adds only device 6.
        (now, vec![rollout(Attempt, 1), rollout(Attempt, 6)]),
    ];
    let mut device = 100;
    for (ago, n) in [(5, 14), (4, 18), (3, 11), (2, 16), (1, 20), (0, 9)] {
        let mut marks: Vec<EvidenceMark> = (0..n)
            .map(|i| mark(prod, "1.0.1", 0, Attempt, device + i))
            .collect();
        if ago == 2 {
            marks.push(mark(prod, "1.0.1", 0, Failure, device));
        }
        device += n;
        hours.push((now - ago * 3600, marks));
    }
    for (ago, n) in [(4, 2), (1, 3)] {
        let marks = (0..n)
            .map(|i| mark("release#beta#all", "1.1.0", 0, Attempt, device + i))
            .collect();
        device += n;
        hours.push((now - ago * 3600, marks));
    }
    hours
}

/// The releases the page shows: production 1.0.1 with a 5 % rollout of 1.1.0 (begun
/// `ROLLOUT_AGE` ago) and beta 1.1.0 (staging 0.9.0 is released first, by the caller).
/// Returns the rollout's evidence epoch.
async fn release_all(s: &Setup, items: &dyn ItemWriter, now: u64) -> u64 {
    s.release("1.0.1", "production", &[]);
    s.release(
        "1.1.0",
        "production",
        &[
            "--rollout",
            "5",
            "--steps",
            "5,25,100",
            "--step-every",
            "1h",
        ],
    );
    s.release("1.1.0", "beta", &[]);
    // Backdated, so that the rollout's evidence can span hours (its epoch is its start).
    let sk = "release#production#all";
    let mut item = items.get_item(APP_ID, sk).await.unwrap().unwrap();
    let started = now - ROLLOUT_AGE;
    item.insert(
        "rollout_started_at".into(),
        AttrValue::N(serde_json::Number::from(started)),
    );
    items.put_item(APP_ID, sk, &item).await.unwrap();
    started
}

/// The rollout version's installs or failures curve on a card.
fn installs_css_of(card: &str, series: &str) -> String {
    format!("{card} polyline[data-version='1.1.0'][data-series='{series}']")
}

fn points(attr: &str) -> usize {
    attr.split_whitespace().count()
}

async fn dashboard_shows_and_drives_releases(s: Setup) {
    let env = support::aws::pairs(&s.env);
    let dash = Dashboard::start(&env, s.tmp.path());

    // Without the token: refused, in and out of the browser.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/app/com.example.app", "/app/com.example.app/live"] {
        let r = http
            .get(format!("{}{path}", dash.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    let wrong = http
        .get(format!("{}/?token=not-the-token", dash.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let browser = Browser::start().await;
    browser.goto(&format!("{}/", dash.origin)).await;
    assert!(browser.source().await.contains("unauthorized"));
    browser.goto(&dash.url).await;
    // The token became a cookie and left the address bar.
    assert_eq!(browser.url().await, format!("{}/", dash.origin));
    browser.click("a.app").await;
    browser.find("#live article").await;

    // Channels and versions.
    let prod = "article[data-channel='production'][data-platform='all']";
    assert_eq!(browser.text(&format!("{prod} .version")).await, "1.0.1");
    assert_eq!(
        browser.text(&format!("{prod} .rollout-version")).await,
        "1.1.0"
    );
    assert_eq!(browser.text(&format!("{prod} .percent")).await, "5%");
    assert_eq!(
        browser
            .text("article[data-channel='beta'][data-platform='all'] .version")
            .await,
        "1.1.0"
    );
    // One point per hour over the six hours of evidence, zeros included.
    let installs = browser
        .attr(
            &format!("{prod} polyline[data-version='1.1.0'][data-series='installs']"),
            "points",
        )
        .await;
    assert_eq!(points(&installs), 6, "{installs}");
    let failures = browser
        .attr(
            &format!("{prod} polyline[data-version='1.1.0'][data-series='failures']"),
            "points",
        )
        .await;
    assert_eq!(points(&failures), 6);
    assert_eq!(
        points(
            &browser
                .attr(&format!("{prod} svg.rate polyline.lower"), "points")
                .await
        ),
        6
    );
    let installs_css = format!("{prod} polyline[data-version='1.1.0'][data-series='installs']");
    // The gate's figures, the table's rollout row and the curve's totals describe the same
    // devices: 6 (device 1 counted once), 1 failing.
    let agree = |devices: &'static str, failures: &'static str| {
        let browser = &browser;
        async move {
            let row = format!("{prod} table.health tr[data-role='rollout'][data-version='1.1.0']");
            let seen = [
                browser.text(&format!("{prod} .gate .devices")).await,
                browser.text(&format!("{row} .devices")).await,
                browser
                    .attr(&installs_css_of(prod, "installs"), "data-total")
                    .await,
                browser.text(&format!("{prod} .gate .failures")).await,
                browser.text(&format!("{row} .failures")).await,
                browser
                    .attr(&installs_css_of(prod, "failures"), "data-total")
                    .await,
            ];
            assert_eq!(
                seen,
                [devices, devices, devices, failures, failures, failures],
                "gate, table and curve (devices, then failures)"
            );
        }
    };
    agree("6", "1").await;
    // The stable version's row is there too, counted the same way as its curve.
    let stable = format!("{prod} table.health tr[data-role='stable'][data-version='1.0.1']");
    assert_eq!(browser.text(&format!("{stable} .devices")).await, "88");
    assert_eq!(
        browser
            .attr(
                &format!("{prod} polyline[data-version='1.0.1'][data-series='installs']"),
                "data-total"
            )
            .await,
        "88"
    );
    let shot = browser.screenshot(&format!("{}-app", s.name)).await;
    println!("screenshot: {}", shot.display());
    browser.window(390, 1400).await;
    browser.screenshot(&format!("{}-phone", s.name)).await;
    // Nothing wider than a phone: only the tables in their own scroll boxes may scroll.
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .await;
    assert!(
        overflow.as_f64().unwrap() <= 0.0,
        "the page is {overflow} px wider than a phone"
    );
    browser.window(1280, 1100).await;

    // Before the pause, production offers an update.
    let server = {
        let mut env = env.clone();
        env.push(("UPDRAFT_CACHE_TTL", "0"));
        env.push(("UPDRAFT_ROLLOUT_INTERVAL", "0"));
        Server::start(&[], &env)
    };
    let check = || async {
        let mut body = plugin_body(APP_ID, "1.0.0", "builtin");
        body["defaultChannel"] = "production".into();
        let v: Value = reqwest::Client::new()
            .post(server.url("/updates"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    let before = check().await;
    assert!(before["version"].is_string(), "{before}");

    // The public API has none of the dashboard's routes.
    for (method, path) in [
        ("POST", "/act"),
        ("GET", "/confirm"),
        ("GET", "/app/com.example.app"),
    ] {
        let r = reqwest::Client::new()
            .request(method.parse().unwrap(), server.url(path))
            .body(format!(
                "token={}&app={APP_ID}&action=pause&channel=production",
                dash.token
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path} on the public API");
    }

    // A device's install, as the plugin reports it, adds to this hour's count on the page.
    let mut set = plugin_body(APP_ID, "1.0.0", "1.1.0");
    set["action"] = "set".into();
    set["defaultChannel"] = "production".into();
    set["device_id"] = "6a1f0b3e-1111-4222-8333-0000000000aa".into();
    let posted = reqwest::Client::new()
        .post(server.url("/stats"))
        .json(&json!([set]))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    eventually("the page to count the new install", || async {
        (browser.attr(&installs_css, "data-total").await == "7").then_some(())
    })
    .await;
    agree("7", "1").await;
    assert_eq!(points(&browser.attr(&installs_css, "points").await), 6);

    // Pause, with its confirmation page.
    browser
        .click(&format!("{prod} a[data-action='pause']"))
        .await;
    assert!(
        browser
            .text(".what")
            .await
            .starts_with("Pause production/all")
    );
    browser.screenshot(&format!("{}-confirm", s.name)).await;
    browser.click("#confirm").await;
    assert!(
        browser.text("#done").await.contains("Paused"),
        "{}",
        browser.source().await
    );
    let after = check().await;
    assert_eq!(after["kind"], "blocked", "{after}");
    assert_eq!(after["error"], "release_paused", "{after}");
    assert_eq!(
        browser.text("#history tr:nth-child(2) .action").await,
        "pause"
    );
    assert_eq!(browser.text("#history tr:nth-child(2) .who").await, s.who);
    assert!(browser.all(&format!("{prod}.paused")).await.len() == 1);

    // A change from the CLI shows up by itself (the page re-fetches its live part).
    s.run(&["resume", "--app", APP_ID, "--channel", "production"]);
    eventually("the page to show the resume", || async {
        (browser.all(&format!("{prod}.paused")).await.is_empty()
            && browser.text("#history tr:nth-child(2) .action").await == "resume")
            .then_some(())
    })
    .await;
    assert!(check().await["version"].is_string());

    // Cross-origin POSTs are refused: from another page in the browser (Origin: null), and
    // with the token but a foreign or missing Origin.
    let form = format!(
        "data:text/html,<form method=post action='{o}/act?token={t}'><input name=token value={t}><input name=app value={a}><input name=action value=rollout-abort><input name=channel value=production><button id=go>go</button></form>",
        o = dash.origin,
        t = dash.token,
        a = APP_ID
    );
    browser.goto(&form).await;
    browser.click("#go").await;
    eventually("the refusal", || async {
        browser
            .source()
            .await
            .contains("forbidden_origin")
            .then_some(())
    })
    .await;
    let body = format!(
        "token={}&app={APP_ID}&action=rollout-abort&channel=production&platform=all",
        dash.token
    );
    let cookie = format!(
        "updraft_dashboard_{}={}",
        dash.origin.rsplit(':').next().unwrap(),
        dash.token
    );
    for origin in [Some("http://evil.example"), None] {
        let mut req = http
            .post(format!("{}/act", dash.origin))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .body(body.clone());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "Origin {origin:?}");
    }
    let status = s.run(&[
        "rollout",
        "status",
        "--app",
        APP_ID,
        "--channel",
        "production",
    ]);
    assert_eq!(status["state"], "active", "nothing was aborted: {status}");
    // The same request from the dashboard's own origin goes through.
    let ok = http
        .post(format!("{}/act", dash.origin))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .header("origin", &dash.origin)
        .body(body.replace("rollout-abort", "rollout-pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let status = s.run(&[
        "rollout",
        "status",
        "--app",
        APP_ID,
        "--channel",
        "production",
    ]);
    assert_eq!(status["state"], "paused", "{status}");
}

/// A plain HTTP server on `addr` that answers every request with a page and keeps what each
/// request sent (its head): another local server the operator opens in the same browser.
async fn recording_server(addr: &str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let page = "<html><body>another local server</body></html>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("{port}"), seen)
}

/// The dashboard's cookie stays with the dashboard: it listens on a loopback address of its
/// own, and browsers scope cookies by host, so the servers the operator runs on 127.0.0.1 or
/// localhost (any port) never receive the token, while the dashboard itself keeps working
/// from the cookie alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_never_reaches_another_local_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Setup {
        env: vec![
            ("UPDRAFT_DATA".into(), data.display().to_string()),
            ("UPDRAFT_BACKEND".into(), "embedded".into()),
        ],
        tmp,
        who: String::new(),
        name: "cookie",
    };
    s.release("1.0.1", "production", &[]);
    let env = support::aws::pairs(&s.env);
    let dash = Dashboard::start(&env, s.tmp.path());
    let host = dash.origin.trim_start_matches("http://");
    let ip: std::net::Ipv4Addr = host.split(':').next().unwrap().parse().unwrap();
    assert!(
        ip.is_loopback() && ip.octets()[1] != 0,
        "{ip}: an address of its own"
    );

    let (port, seen) = recording_server("127.0.0.1:0").await;
    let browser = Browser::start().await;
    browser.goto(&dash.url).await;
    assert_eq!(browser.url().await, format!("{}/", dash.origin));
    // The cookie works on the dashboard: a page without `?token=` opens.
    browser.goto(&format!("{}/app/{APP_ID}", dash.origin)).await;
    browser.find("#live article").await;
    for other in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        browser.goto(&other).await;
        assert!(browser.source().await.contains("another local server"));
    }
    let heads = seen.lock().unwrap().clone();
    assert!(heads.len() >= 2, "{heads:?}");
    for head in &heads {
        assert!(
            !head.contains(&dash.token) && !head.to_ascii_lowercase().contains("updraft_dashboard"),
            "another local server received the dashboard's credential: {head}"
        );
    }
    // And the same browser still holds it for the dashboard.
    browser.goto(&format!("{}/", dash.origin)).await;
    assert!(browser.source().await.contains(APP_ID));

    // The control: a dashboard told to share 127.0.0.1 hands its cookie to every server
    // there, whatever the port. This is what the address of its own prevents.
    let shared = Dashboard::start_with(&env, s.tmp.path(), &["--addr", "127.0.0.1:0"]);
    browser.goto(&shared.url).await;
    seen.lock().unwrap().clear();
    browser.goto(&format!("http://127.0.0.1:{port}/")).await;
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h.contains(&shared.token)),
        "the browser did not send the shared dashboard's cookie: {heads:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Setup {
        env: vec![
            ("UPDRAFT_DATA".into(), data.display().to_string()),
            ("UPDRAFT_BACKEND".into(), "embedded".into()),
            ("USER".into(), "dash-operator".into()),
        ],
        tmp,
        who: "dash-operator".into(),
        name: "embedded",
    };
    // The store must exist before it is opened here: the first release makes it.
    s.release("0.9.0", "staging", &[]);
    let store = updraft::store::embedded::EmbeddedStore::open(&data).unwrap();
    let now = updraft::clock::Clock::now(&updraft::clock::SystemClock);
    let epoch = release_all(&s, &store, now).await;
    for (at, marks) in seeded_marks(now, epoch) {
        updraft::store::EvidenceStore::record_evidence(&store, &marks, at)
            .await
            .unwrap();
    }
    drop(store);
    dashboard_shows_and_drives_releases(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_on_dynamodb() {
    let env = support::aws::binary_env().await;
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let client = support::aws::moto_dynamo(updraft::runtime::aws::AwsTimeouts::OPERATOR).await;
    let stats = updraft::store::dynamo::stats::DynamoStats::new(
        client.clone(),
        get("UPDRAFT_TABLE"),
        get("UPDRAFT_DEVICES_TABLE"),
        86_400,
    );
    let items = updraft::store::dynamo::releases::DynamoStore::new(client, get("UPDRAFT_TABLE"));
    let s = Setup {
        env,
        tmp: tempfile::tempdir().unwrap(),
        // What moto's STS answers to GetCallerIdentity.
        who: "arn:aws:sts::123456789012:user/moto".into(),
        name: "dynamodb",
    };
    s.release("0.9.0", "staging", &[]);
    let now = updraft::clock::Clock::now(&updraft::clock::SystemClock);
    let epoch = release_all(&s, &items, now).await;
    for (at, marks) in seeded_marks(now, epoch) {
        updraft::store::EvidenceStore::record_evidence(&stats, &marks, at)
            .await
            .unwrap();
    }
    dashboard_shows_and_drives_releases(s).await;
}

#[test]
fn a_non_loopback_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = updraft()
        .args(["dashboard", "--addr", "0.0.0.0:0", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// What one refresh of an app's live section costs on DynamoDB, counted with an interceptor:
/// the app's items, its history, its hourly window, and per release item its versions'
/// evidence.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_refresh_costs_a_bounded_number_of_dynamodb_calls() {
    use std::sync::Arc;
    use updraft::store::dynamo::devices::DynamoDevices;
    use updraft::store::dynamo::releases::DynamoStore;
    use updraft::store::dynamo::stats::DynamoStats;
    let env = support::aws::binary_env().await;
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let s = Setup {
        env: env.clone(),
        tmp: tempfile::tempdir().unwrap(),
        who: String::new(),
        name: "count",
    };
    s.release("1.0.1", "production", &[]);
    s.release(
        "1.1.0",
        "production",
        &["--rollout", "5", "--steps", "5,25,100"],
    );
    s.release("1.1.0", "beta", &[]);
    let conf = support::aws::config_for(
        &support::aws::emulator("UPDRAFT_TEST_MOTO"),
        updraft::runtime::aws::AwsTimeouts::OPERATOR,
    )
    .await;
    let calls = support::aws::CallLog::default();
    let client = calls.client(&conf);
    let (table, devices) = (get("UPDRAFT_TABLE"), get("UPDRAFT_DEVICES_TABLE"));
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    let device_store = Arc::new(DynamoDevices::new(
        client.clone(),
        table.clone(),
        devices.clone(),
        3600,
    ));
    let stats = Arc::new(DynamoStats::new(client, table, devices, 3600));
    let stores = updraft::ops::OperatorStores {
        releases: store.clone(),
        items: store.clone(),
        query: store.clone(),
        history: store.clone(),
        devices: device_store,
        stats: stats.clone(),
        evidence: stats,
        bundles: None,
        identity: Arc::new(updraft::runtime::identity::AwsCaller(
            aws_sdk_sts::Client::new(&conf),
        )),
        clock: updraft::clock::system(),
    };
    let live = updraft::dashboard::view::app_live(&stores, APP_ID)
        .await
        .unwrap();
    assert_eq!(live.cards.len(), 2);
    let ops = calls.take_ops();
    let mut by_op: std::collections::BTreeMap<&str, usize> = Default::default();
    for op in &ops {
        *by_op.entry(op.as_str()).or_default() += 1;
    }
    println!(
        "one live refresh (2 channels, 1 rollout): {} DynamoDB calls {by_op:?}",
        ops.len()
    );
    // The app's items, its history and its hourly window once each; per release item the
    // evidence of its stable version, per rollout its evidence (2 items + 1 rollout).
    assert_eq!(by_op.get("GetItem"), Some(&3), "{by_op:?}");
    assert_eq!(ops.len(), 6, "{by_op:?}");
}
