//! template.yaml (the SAM stack) and the code must agree, or a deploy "succeeds" into a function
//! that cannot start, cannot read its tables, or answers 404/AccessDenied. Each check reads both
//! sides: the template as YAML (CloudFormation short-form tags such as `!Ref` are kept as tagged
//! values, so `!GetAtt Table.Arn` is not mistaken for a plain string) and the code itself, through
//! its constants, its router and its sources under src/.
//!
//! - (a) environment: every `UPDRAFT_*` the Lambda path reads is set on the function, and every
//!   `UPDRAFT_*` the template sets is read somewhere in src/;
//! - (b) the tables' keys are the stores' (`PARTITION_KEY`/`SORT_KEY`, `PARTITION_KEY`/
//!   `DEVICE_KEY`), HASH/RANGE, type S, and the devices table's TTL is on `TTL_ATTRIBUTE`;
//! - (c) every HttpApi route of the template is served by `api::router`, every route the router
//!   declares is in the template (local-only `/bundles/*` never is), `/updates` and `/health` are;
//! - (d) the function's IAM actions are exactly the AWS calls of the serving path, per resource,
//!   no wildcard, on the stack's own tables and bucket only;
//! - (e) runtime `provided.al2023`, `arm64`, built by cargo-lambda from the `updraft` binary,
//!   with a timeout longer than the SDK's bounds (src/aws.rs) and within the plugin's 20 s;
//! - (f) the public surface is bounded and recorded: reserved concurrency (by default), HTTP API
//!   throttling, access logs with `sourceIp` to a log group of the stack with a retention; and
//!   Cargo.lock holds no legacy HTTPS client of the AWS SDK (hyper 0.14, rustls 0.21);
//! - (g) logging: JSON log format, Lambda's own lines at WARN, the application level from the
//!   `LogLevel` parameter (never above INFO, which would drop the metric lines), `RUST_LOG`
//!   the same parameter, and the metrics interval at most 60 s.
//!
//! The checks return their findings instead of panicking, so `checks_catch_broken_templates`
//! can prove each one fails on a template broken on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_yaml_ng::Value;
use tower::ServiceExt;
use updraft::api::router;
use updraft::runtime::aws::AwsTimeouts;
use updraft::store::dynamo::devices::{DEVICE_KEY, TTL_ATTRIBUTE};
use updraft::store::dynamo::{PARTITION_KEY, SORT_KEY};

/// Routes the template may declare ahead of the code: while the router answers such a path
/// with its JSON 404 (`not_found`) on every method, the route is not checked. `/stats` and
/// `/channel_self` were listed here until the router served them. Once the router serves a
/// listed path, this test fails until the entry is removed, so the route gets checked.
const NOT_YET_SERVED: &[&str] = &[];

/// Routes the router has only in local mode (`updraft serve` on the embedded store). On AWS,
/// devices download from S3 directly, so the template must never route these.
const LOCAL_ONLY_PREFIXES: &[&str] = &["/bundles"];

/// Routes that must be deployed, whatever else changes: the plugin's updateUrl and liveness.
const REQUIRED_ROUTES: &[(&str, &str)] = &[("/updates", "POST"), ("/health", "GET")];

/// What design.md (§3, §5) says the Lambda reads; a sanity check on the source scan below.
const DOCUMENTED_LAMBDA_ENV: &[&str] = &[
    "UPDRAFT_TABLE",
    "UPDRAFT_DEVICES_TABLE",
    "UPDRAFT_BUCKET",
    "UPDRAFT_URL_TTL",
    "UPDRAFT_CACHE_TTL",
];

/// How long the plugin waits for an answer (its `responseTimeout`).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The methods an `ANY` route stands for in design.md §2 (`/channel_self`).
const ANY_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];

/// A resource of the stack the function may touch, named by the variable that tells the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Res {
    Releases,
    Devices,
    BundleObjects,
}

impl Res {
    const ALL: [Res; 3] = [Res::Releases, Res::Devices, Res::BundleObjects];

    fn env(self) -> &'static str {
        match self {
            Res::Releases => "UPDRAFT_TABLE",
            Res::Devices => "UPDRAFT_DEVICES_TABLE",
            Res::BundleObjects => "UPDRAFT_BUCKET",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Res::Releases | Res::Devices => "AWS::DynamoDB::Table",
            Res::BundleObjects => "AWS::S3::Bucket",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Res::Releases | Res::Devices => "dynamodb",
            Res::BundleObjects => "s3",
        }
    }
}

/// One store call of the serving path on AWS.
struct Call {
    /// How the handlers (src/api*) and the Lambda's init call it: `state.<this>(…)`.
    called_as: &'static str,
    /// Its DynamoDB / S3 implementation: the AWS calls in this fn (and the helpers of the same
    /// file it calls) are what the function's role must allow.
    file: &'static str,
    func: &'static str,
    /// The resources those calls touch.
    touches: &'static [Res],
}

/// Every store call an update check, `/stats`, `/channel_self` or the Lambda's warm-up makes.
/// `serving_path_is_complete` fails when a handler calls a store method missing here.
const SERVING_PATH: &[Call] = &[
    Call {
        called_as: "releases.get",
        file: "src/store/dynamo/releases.rs",
        func: "load_app",
        touches: &[Res::Releases],
    },
    // The cache's own look: memory only, no AWS call.
    Call {
        called_as: "releases.fresh",
        file: "src/store/cache.rs",
        func: "fresh",
        touches: &[],
    },
    Call {
        called_as: "devices.get_device",
        file: "src/store/dynamo/devices.rs",
        func: "get_device",
        touches: &[Res::Devices],
    },
    // The app's `device_overrides` marker (releases table), then the device's override.
    Call {
        called_as: "devices.set_channel",
        file: "src/store/dynamo/devices.rs",
        func: "set_channel",
        touches: &[Res::Releases, Res::Devices],
    },
    Call {
        called_as: "devices.unset_channel",
        file: "src/store/dynamo/devices.rs",
        func: "unset_channel",
        touches: &[Res::Devices],
    },
    // One transaction: a counter item per release (releases table), an item per device.
    Call {
        called_as: "stats.record",
        file: "src/store/dynamo/stats.rs",
        func: "record",
        touches: &[Res::Releases, Res::Devices],
    },
    // Before it: the failed versions of the batch's device; after it, a trim to the newest 20.
    Call {
        called_as: "stats.record",
        file: "src/store/dynamo/devices.rs",
        func: "read_failed_versions",
        touches: &[Res::Devices],
    },
    Call {
        called_as: "stats.record",
        file: "src/store/dynamo/devices.rs",
        func: "delete_failed_versions",
        touches: &[Res::Devices],
    },
    // Evidence markers and tallies, in the devices table.
    Call {
        called_as: "evidence.record_evidence",
        file: "src/store/dynamo/evidence.rs",
        func: "record_evidence",
        touches: &[Res::Devices],
    },
    // Presigning makes no call; the device's GET is authorised against the function's role.
    Call {
        called_as: "signer.download_url",
        file: "src/bundles/s3.rs",
        func: "download_url",
        touches: &[Res::BundleObjects],
    },
];

/// Every store call of the automatic pause (`src/ops/pauses.rs` `auto_pause`, which the stats
/// handler calls with the state's stores): a read of the release item, then its conditional
/// write with its history entry. Not reached through `state.`, so listed apart.
const AUTO_PAUSE_PATH: &[Call] = &[
    Call {
        called_as: "items.get_item",
        file: "src/store/dynamo/items.rs",
        func: "get_item",
        touches: &[Res::Releases],
    },
    Call {
        called_as: "history.change_with_history",
        file: "src/store/dynamo/history.rs",
        func: "change_with_history",
        touches: &[Res::Releases],
    },
];

/// Every store call of the scheduled rollout pass (`src/ops/rollouts.rs` `tick`, run by the Lambda
/// for an EventBridge event): not reached through `state.`, so listed apart; the role must
/// allow these too.
const SCHEDULED_PATH: &[Call] = &[
    Call {
        called_as: "query.app_ids",
        file: "src/store/dynamo/items.rs",
        func: "app_ids",
        touches: &[Res::Releases],
    },
    Call {
        called_as: "releases.load_app",
        file: "src/store/dynamo/releases.rs",
        func: "load_app",
        touches: &[Res::Releases],
    },
    Call {
        called_as: "evidence.evidence",
        file: "src/store/dynamo/evidence.rs",
        func: "evidence",
        touches: &[Res::Devices],
    },
    Call {
        called_as: "items.get_item",
        file: "src/store/dynamo/items.rs",
        func: "get_item",
        touches: &[Res::Releases],
    },
    Call {
        called_as: "history.change_with_history",
        file: "src/store/dynamo/history.rs",
        func: "change_with_history",
        touches: &[Res::Releases],
    },
];

/// The fields of `AppState` that reach AWS; `state.<field>.<method>(` calls are collected.
const STATE_STORES: &[&str] = &["releases", "devices", "stats", "evidence", "signer"];

// ---------------------------------------------------------------------------------------------
// Reading both sides.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_template(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("template.yaml is not valid YAML: {e}"))
}

fn template() -> Value {
    parse_template(&read("template.yaml"))
}

/// Every .rs file under src/, as (path relative to the repo with `/`, code without comments).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    files.sort();
    let sources: Vec<_> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(repo()).unwrap();
            let rel: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
            (
                rel.join("/"),
                code_only(&std::fs::read_to_string(&p).unwrap()),
            )
        })
        .collect();
    assert!(
        sources.iter().any(|(p, _)| p == "src/runtime/lambda.rs"),
        "found no src/runtime/lambda.rs under {}",
        repo().display()
    );
    sources
}

fn source<'a>(sources: &'a [(String, String)], file: &str) -> Option<&'a str> {
    sources
        .iter()
        .find(|(p, _)| p == file)
        .map(|(_, t)| t.as_str())
}

/// `text` without `//` comments (doc comments included), so names in prose do not count.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// `code` with the whitespace before each `.` removed, so a call chain split over lines
/// (`state\n    .devices\n    .set_channel(`) reads as one (`state.devices.set_channel(`).
fn squeeze(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut pending = String::new();
    for c in code.chars() {
        if c.is_whitespace() {
            pending.push(c);
            continue;
        }
        if c != '.' {
            out.push_str(&pending);
        }
        pending.clear();
        out.push(c);
    }
    out.push_str(&pending);
    out
}

/// The identifier that ends `text`.
fn trailing_ident(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(text.len(), |(i, _)| i);
    &text[start..]
}

/// The body of `fn name` in `text` (from its `{` to the matching `}`), strings skipped;
/// declarations without a body (trait items) are passed over.
fn fn_body<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("fn {name}(");
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let start = from + found;
        from = start + needle.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[start..];
        let (Some(open), semi) = (rest.find('{'), rest.find(';')) else {
            return None;
        };
        if semi.is_some_and(|s| s < open) {
            continue;
        }
        let open = start + open;
        let (mut depth, mut in_str, mut prev) = (0usize, false, '\0');
        for (i, c) in text[open..].char_indices() {
            match c {
                '"' if prev != '\\' => in_str = !in_str,
                '{' if !in_str => depth += 1,
                '}' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&text[open..=open + i]);
                    }
                }
                _ => {}
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
        }
        return None;
    }
    None
}

/// The names of the fns defined in `text`.
fn fn_names(text: &str) -> BTreeSet<String> {
    text.split("fn ")
        .skip(1)
        .filter_map(|rest| rest.split_once('('))
        .map(|(name, _)| name.trim())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// The body of `fn func` in `file` and of every fn of that file it calls, transitively: the
/// code that runs for one store call.
fn reachable_code(file_text: &str, func: &str) -> Option<String> {
    let names = fn_names(file_text);
    let mut seen = BTreeSet::from([func.to_owned()]);
    let mut todo = vec![func.to_owned()];
    let mut code = String::new();
    while let Some(name) = todo.pop() {
        let Some(body) = fn_body(file_text, &name) else {
            if name == func {
                return None;
            }
            continue;
        };
        code.push_str(body);
        code.push('\n');
        for (i, _) in body.match_indices('(') {
            let callee = trailing_ident(&body[..i]);
            if names.contains(callee) && seen.insert(callee.to_owned()) {
                todo.push(callee.to_owned());
            }
        }
    }
    Some(code)
}

/// The `UPDRAFT_*` names `code` reads from the environment: a string literal that is the first
/// argument of `std::env::var`/`var_os` or of a helper whose name says it reads the environment
/// (`env_required`, `seconds_from_env`, …, and a local `var` closure), or a clap `env = "…"`.
/// Other mentions (error fields such as `name: "UPDRAFT_URL_TTL"`, messages) are not reads.
fn env_reads(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (pos, _) in code.match_indices("\"UPDRAFT_") {
        let literal = &code[pos + 1..];
        let name = &literal[..literal.find('"').unwrap_or(literal.len())];
        if !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            continue;
        }
        let before = code[..pos].trim_end();
        let is_read = if let Some(call) = before.strip_suffix('(') {
            let callee = trailing_ident(call.trim_end());
            callee == "var" || callee == "var_os" || callee.contains("env")
        } else if let Some(attr) = before.strip_suffix('=') {
            trailing_ident(attr.trim_end()) == "env"
        } else {
            false
        };
        if is_read {
            found.insert(name.to_owned());
        }
    }
    found
}

/// The IAM actions of the AWS SDK calls in `code` (`client.query()` → `dynamodb:Query`).
/// IAM has no action for a transaction: each item is authorised as the operation it is, so
/// `transact_write_items` stands for the `Update`/`Put`/`Delete`/`ConditionCheck` builders
/// `code` uses.
fn sdk_actions(code: &str, service: &str) -> Result<BTreeSet<String>, String> {
    // `self.client().scan()` (an accessor) is the same call as `self.client.scan()`.
    let code = squeeze(code).replace("client().", "client.");
    let mut actions = BTreeSet::new();
    for (pos, _) in code.match_indices("client.") {
        if trailing_ident(&code[..pos + "client".len()]) != "client" {
            continue;
        }
        let call = &code[pos + "client.".len()..];
        let op = trailing_ident(&call[..call.find('(').unwrap_or(0)]);
        if op.is_empty() || !call[op.len()..].starts_with("()") {
            continue;
        }
        match op {
            "transact_write_items" => {
                let builders = [
                    ("Update::builder()", "UpdateItem"),
                    ("Put::builder()", "PutItem"),
                    ("Delete::builder()", "DeleteItem"),
                    ("ConditionCheck::builder()", "ConditionCheckItem"),
                ];
                let before = actions.len();
                for (builder, action) in builders {
                    if code.contains(builder) {
                        actions.insert(format!("{service}:{action}"));
                    }
                }
                if actions.len() == before {
                    return Err("a TransactWriteItems whose items this test cannot see \
                                (no Update/Put/Delete/ConditionCheck builder)"
                        .into());
                }
            }
            "transact_get_items" => {
                actions.insert(format!("{service}:GetItem"));
            }
            _ => {
                let pascal: String = op
                    .split('_')
                    .map(|w| {
                        let mut cs = w.chars();
                        cs.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                actions.insert(format!("{service}:{pascal}"));
            }
        }
    }
    Ok(actions)
}

/// `state.<store>.<method>` calls in `code`, as `<store>.<method>`.
fn state_calls(code: &str) -> BTreeSet<String> {
    let code = squeeze(code);
    let mut calls = BTreeSet::new();
    for (pos, _) in code.match_indices("state.") {
        if trailing_ident(&code[..pos + "state".len()]) != "state" {
            continue;
        }
        let rest = &code[pos + "state.".len()..];
        let field = trailing_ident(&rest[..rest.find('.').unwrap_or(0)]);
        if field.len() != rest.find('.').unwrap_or(0) || !STATE_STORES.contains(&field) {
            continue;
        }
        let after = &rest[field.len() + 1..];
        let method = trailing_ident(&after[..after.find('(').unwrap_or(0)]);
        if !method.is_empty() && method.len() == after.find('(').unwrap_or(0) {
            calls.insert(format!("{field}.{method}"));
        }
    }
    calls
}

// ---------------------------------------------------------------------------------------------
// CloudFormation helpers: short-form tags (`!Ref X`) and long forms (`{Ref: X}`) alike.

/// An intrinsic function call: its full name (`Ref`, `Fn::GetAtt`, `Fn::Sub`, …) and argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let name = if tag == "Ref" || tag == "Condition" {
                tag.to_owned()
            } else {
                format!("Fn::{tag}")
            };
            Some((name, &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            (k == "Ref" || k.starts_with("Fn::")).then(|| (k.to_owned(), arg))
        }
        _ => None,
    }
}

/// `!Ref X` → X.
fn ref_target(v: &Value) -> Option<String> {
    match intrinsic(v)? {
        (name, arg) if name == "Ref" => arg.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `!GetAtt X.Arn` / `Fn::GetAtt: [X, Arn]` → (X, Arn).
fn get_att(v: &Value) -> Option<(String, String)> {
    match intrinsic(v)? {
        (name, Value::String(s)) if name == "Fn::GetAtt" => {
            let (r, a) = s.split_once('.')?;
            Some((r.to_owned(), a.to_owned()))
        }
        (name, Value::Sequence(seq)) if name == "Fn::GetAtt" && seq.len() == 2 => {
            Some((seq[0].as_str()?.to_owned(), seq[1].as_str()?.to_owned()))
        }
        _ => None,
    }
}

/// The string of `!Sub "…"` or of `!Sub ["…", {vars}]`.
fn sub_string(v: &Value) -> Option<String> {
    match intrinsic(v)? {
        (name, Value::String(s)) if name == "Fn::Sub" => Some(s.clone()),
        (name, Value::Sequence(seq)) if name == "Fn::Sub" => {
            seq.first()?.as_str().map(str::to_owned)
        }
        _ => None,
    }
}

/// A scalar or a list of them, as a list.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(seq) => seq.iter().collect(),
        other => vec![other],
    }
}

fn show(v: &Value) -> String {
    serde_yaml_ng::to_string(v)
        .map(|s| s.trim().replace('\n', " "))
        .unwrap_or_else(|_| format!("{v:?}"))
}

/// The template's resources of `kind`, by logical id.
fn resources_of<'a>(tpl: &'a Value, kind: &str) -> BTreeMap<String, &'a Value> {
    tpl.get("Resources")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
                .filter_map(|(id, r)| Some((id.as_str()?.to_owned(), r)))
                .collect()
        })
        .unwrap_or_default()
}

/// The one `AWS::Serverless::Function` of the stack.
fn the_function(tpl: &Value) -> Result<(String, &Value), String> {
    let functions = resources_of(tpl, "AWS::Serverless::Function");
    match functions.len() {
        1 => Ok(functions.into_iter().next().unwrap()),
        n => Err(format!(
            "expected exactly one AWS::Serverless::Function, found {n}: {:?}",
            functions.keys().collect::<Vec<_>>()
        )),
    }
}

fn prop<'a>(resource: &'a Value, key: &str) -> Option<&'a Value> {
    resource.get("Properties")?.get(key)
}

/// The function's environment (Globals included), name → value.
fn function_env(tpl: &Value, function: &Value) -> BTreeMap<String, Value> {
    let mut env = BTreeMap::new();
    let globals = tpl
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"));
    let own = prop(function, "Environment");
    for vars in [globals, own]
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("Variables"))
        .filter_map(Value::as_mapping)
    {
        for (k, v) in vars {
            if let Some(k) = k.as_str() {
                env.insert(k.to_owned(), v.clone());
            }
        }
    }
    env
}

/// The logical id of the resource `res` is: what its variable `!Ref`s on the function.
fn resource_id(tpl: &Value, function: &Value, res: Res) -> Result<String, String> {
    let (name, kind) = (res.env(), res.kind());
    let env = function_env(tpl, function);
    let value = env
        .get(name)
        .ok_or_else(|| format!("the function does not set {name}"))?;
    let target = ref_target(value)
        .ok_or_else(|| format!("{name} should be `!Ref <a {kind}>`, is {}", show(value)))?;
    if resources_of(tpl, kind).contains_key(&target) {
        Ok(target)
    } else {
        Err(format!(
            "{name} refers to {target}, which is not a {kind} of this template"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// (a) environment variables.

fn check_env(tpl: &Value, sources: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let (_, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let read_anywhere: BTreeSet<String> = sources
        .iter()
        .flat_map(|(_, code)| env_reads(code))
        .collect();

    // What the Lambda path reads: src/runtime/lambda.rs, and in src/runtime/backend.rs what
    // building its backend runs (aws_from_env, app_state and the helpers they call).
    let lambda = source(sources, "src/runtime/lambda.rs").unwrap_or_default();
    let backend = source(sources, "src/runtime/backend.rs").unwrap_or_default();
    let mut lambda_reads = env_reads(lambda);
    for entry in ["aws_from_env", "app_state"] {
        if !lambda.contains(entry) {
            problems.push(format!(
                "src/runtime/lambda.rs no longer calls {entry}: update this test to follow \
                 the Lambda path"
            ));
        }
        match reachable_code(backend, entry) {
            Some(code) => lambda_reads.extend(env_reads(&code)),
            None => problems.push(format!(
                "src/runtime/backend.rs has no fn {entry}: update this test to follow the \
                 Lambda path"
            )),
        }
    }
    // Helpers of src/runtime/aws.rs that the Lambda calls by path
    // (`crate::runtime::aws::url_ttl_from_env`).
    let aws = source(sources, "src/runtime/aws.rs").unwrap_or_default();
    for (i, _) in lambda.match_indices("crate::runtime::aws::") {
        let rest = &lambda[i + "crate::runtime::aws::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if let Some(code) = reachable_code(aws, &name) {
            lambda_reads.extend(env_reads(&code));
        }
    }
    for name in DOCUMENTED_LAMBDA_ENV {
        if !lambda_reads.contains(*name) {
            problems.push(format!(
                "design.md says the Lambda reads {name}, but the scan of src/runtime/lambda.rs, \
                 src/runtime/backend.rs and src/runtime/aws.rs did not find it (found {lambda_reads:?}): fix the code, the \
                 docs, or this scan"
            ));
        }
    }

    let set = function_env(tpl, function);
    for name in &lambda_reads {
        match set.get(name) {
            None => problems.push(format!(
                "the Lambda reads {name}, but template.yaml does not set it on the function"
            )),
            Some(v) if v.as_str() == Some("") => {
                problems.push(format!("template.yaml sets {name} to an empty string"))
            }
            Some(_) => {}
        }
    }
    for name in set.keys().filter(|n| n.starts_with("UPDRAFT_")) {
        if !read_anywhere.contains(name) {
            problems.push(format!(
                "template.yaml sets {name}, but nothing under src/ reads it (a typo, or a \
                 setting the code dropped); the code reads {read_anywhere:?}"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// (b) the tables' keys.

fn check_table_keys(tpl: &Value) -> Vec<String> {
    let (_, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let tables = [
        (Res::Releases, SORT_KEY, "src/store/dynamo/mod.rs", None),
        (
            Res::Devices,
            DEVICE_KEY,
            "src/store/dynamo/devices.rs",
            Some(TTL_ATTRIBUTE),
        ),
    ];
    for (res, sort_key, code, ttl) in tables {
        let id = match resource_id(tpl, function, res) {
            Ok(id) => id,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let table = resources_of(tpl, res.kind())[&id];
        let schema: Vec<(String, String)> = prop(table, "KeySchema")
            .and_then(Value::as_sequence)
            .map(|seq| {
                seq.iter()
                    .map(|k| {
                        let s =
                            |f: &str| k.get(f).and_then(Value::as_str).unwrap_or("?").to_owned();
                        (s("AttributeName"), s("KeyType"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want = vec![
            (PARTITION_KEY.to_owned(), "HASH".to_owned()),
            (sort_key.to_owned(), "RANGE".to_owned()),
        ];
        let mut sorted = schema.clone();
        sorted.sort_by_key(|(_, kind)| kind != "HASH");
        if sorted != want {
            problems.push(format!(
                "table {id} ({}): KeySchema is {schema:?}, but {code} reads and writes \
                 {PARTITION_KEY} (HASH) + {sort_key} (RANGE)",
                res.env()
            ));
        }
        let types: BTreeMap<String, String> = prop(table, "AttributeDefinitions")
            .and_then(Value::as_sequence)
            .map(|seq| {
                seq.iter()
                    .filter_map(|d| {
                        Some((
                            d.get("AttributeName")?.as_str()?.to_owned(),
                            d.get("AttributeType")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for key in [PARTITION_KEY, sort_key] {
            if types.get(key).map(String::as_str) != Some("S") {
                problems.push(format!(
                    "table {id}: attribute {key} must be defined with AttributeType S \
                     (strings), is {:?}",
                    types.get(key)
                ));
            }
        }
        if let Some(ttl) = ttl {
            let spec = prop(table, "TimeToLiveSpecification");
            let name = spec
                .and_then(|s| s.get("AttributeName"))
                .and_then(Value::as_str);
            let enabled = spec.and_then(|s| s.get("Enabled")).and_then(Value::as_bool);
            if name != Some(ttl) || enabled != Some(true) {
                problems.push(format!(
                    "table {id}: TimeToLiveSpecification must be enabled on {ttl} (what {code} \
                     writes), is {}",
                    spec.map(show).unwrap_or_else(|| "absent".into())
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// (c) routes.

/// The template's HttpApi routes: path → methods (uppercase; `ANY` kept as is).
fn template_routes(tpl: &Value) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let (id, function) = the_function(tpl)?;
    let apis = resources_of(tpl, "AWS::Serverless::HttpApi");
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let events = prop(function, "Events")
        .and_then(Value::as_mapping)
        .ok_or_else(|| format!("{id} has no Events"))?;
    for (name, event) in events {
        let name = name.as_str().unwrap_or("?");
        if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
            continue;
        }
        let p = event.get("Properties");
        let field = |f: &str| p.and_then(|p| p.get(f)).and_then(Value::as_str);
        let (Some(path), Some(method)) = (field("Path"), field("Method")) else {
            return Err(format!(
                "{id} event {name}: an HttpApi event needs Path and Method"
            ));
        };
        match p.and_then(|p| p.get("ApiId")).and_then(ref_target) {
            Some(api) if apis.contains_key(&api) => {}
            other => {
                return Err(format!(
                    "{id} event {name}: ApiId must be `!Ref` an AWS::Serverless::HttpApi of \
                     this template (which carries CORS and throttling), is {other:?}"
                ));
            }
        }
        routes
            .entry(path.to_owned())
            .or_default()
            .insert(method.to_ascii_uppercase());
    }
    Ok(routes)
}

/// How the router answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Anything but the two below: some handler took the request.
    Served,
    /// The fallback's JSON 404 `not_found`: no such path.
    NotFound,
    /// 405: the path exists, not with this method.
    WrongMethod,
}

/// Sends one request through the router (no socket) and classifies the answer.
async fn probe(app: &axum::Router, method: &str, path: &str) -> Answer {
    let uri = path.replace(['{', '}', '+'], "");
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(&uri)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    match status {
        StatusCode::NOT_FOUND if error.as_deref() == Some("not_found") => Answer::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Answer::WrongMethod,
        _ => Answer::Served,
    }
}

fn methods_of(declared: &BTreeSet<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in declared {
        if m == "ANY" {
            out.extend(ANY_METHODS.iter().map(|m| m.to_string()));
        } else {
            out.insert(m.clone());
        }
    }
    out.into_iter().collect()
}

/// An axum path as API Gateway writes it: a greedy `{*rest}` is `{rest+}`.
fn apigw_path(axum: &str) -> String {
    match axum.split_once("{*") {
        Some((head, tail)) => match tail.strip_suffix('}') {
            Some(name) if !name.contains('}') => format!("{head}{{{name}+}}"),
            _ => axum.to_owned(),
        },
        None => axum.to_owned(),
    }
}

/// The paths src/api* declares with `.route("…", …)` (in API Gateway's syntax).
fn router_declared_paths(sources: &[(String, String)]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for (_, code) in sources
        .iter()
        .filter(|(p, _)| p == "src/api.rs" || p.starts_with("src/api/"))
    {
        let code = squeeze(code);
        for (pos, _) in code.match_indices(".route(") {
            let rest = code[pos + ".route(".len()..].trim_start();
            if let Some(path) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                paths.insert(apigw_path(path));
            }
        }
    }
    paths
}

/// `not_yet_served` is `NOT_YET_SERVED`, a parameter so the allow-list itself can be tested.
async fn check_routes(
    tpl: &Value,
    app: &axum::Router,
    sources: &[(String, String)],
    not_yet_served: &[&str],
) -> Vec<String> {
    let routes = match template_routes(tpl) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();

    for (path, declared) in &routes {
        if path.contains("{proxy+}") || path == "$default" || path == "/" {
            problems.push(format!(
                "template.yaml routes the catch-all {path}: route each path the router serves \
                 instead, so local-only routes such as /bundles/* are never exposed"
            ));
            continue;
        }
        if LOCAL_ONLY_PREFIXES.iter().any(|p| path.starts_with(p)) {
            problems.push(format!(
                "template.yaml routes {path}, which is local mode only (`updraft serve`); on \
                 AWS devices download bundles from S3"
            ));
            continue;
        }
        let mut answers = Vec::new();
        for method in methods_of(declared) {
            answers.push((method.clone(), probe(app, &method, path).await));
        }
        let none_served = answers.iter().all(|(_, a)| *a == Answer::NotFound);
        if none_served && not_yet_served.contains(&path.as_str()) {
            continue;
        }
        for (method, answer) in answers {
            match answer {
                Answer::Served => {}
                Answer::NotFound => problems.push(format!(
                    "template.yaml routes {method} {path}, but api::router answers it with the \
                     JSON 404 not_found"
                )),
                Answer::WrongMethod => problems.push(format!(
                    "template.yaml routes {method} {path}, but api::router answers 405 for \
                     that method"
                )),
            }
        }
    }

    for path in not_yet_served {
        let mut served = Vec::new();
        for method in ANY_METHODS {
            if probe(app, method, path).await != Answer::NotFound {
                served.push(*method);
            }
        }
        if !served.is_empty() {
            problems.push(format!(
                "api::router now serves {path} ({served:?}): remove it from NOT_YET_SERVED in \
                 tests/template_matches_code.rs, so the template's route is checked"
            ));
        }
    }

    for (path, method) in REQUIRED_ROUTES {
        let routed = routes
            .get(*path)
            .is_some_and(|m| m.contains(*method) || m.contains("ANY"));
        if !routed {
            problems.push(format!("template.yaml must route {method} {path}"));
        }
    }

    let declared = router_declared_paths(sources);
    if !declared.contains("/updates") {
        problems.push(format!(
            "found no .route(\"/updates\", …) under src/api* (found {declared:?}): update the \
             route scan of this test"
        ));
    }
    for path in &declared {
        if LOCAL_ONLY_PREFIXES.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        if !routes.contains_key(path) {
            problems.push(format!(
                "api::router serves {path}, but template.yaml does not route it: devices \
                 would get API Gateway's 404"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// (d) IAM.

/// The (IAM action, resource) pairs the serving path needs, from the code.
fn needed_grants(sources: &[(String, String)]) -> Result<BTreeSet<(String, Res)>, Vec<String>> {
    let mut needed = BTreeSet::new();
    let mut problems = Vec::new();
    for call in SERVING_PATH
        .iter()
        .chain(AUTO_PAUSE_PATH)
        .chain(SCHEDULED_PATH)
    {
        let (file, func) = (call.file, call.func);
        let Some(code) = source(sources, file).and_then(|text| reachable_code(text, func)) else {
            problems.push(format!(
                "{file} has no fn {func} (serving `state.{}`): update SERVING_PATH in this test",
                call.called_as
            ));
            continue;
        };
        let services: BTreeSet<&str> = call.touches.iter().map(|r| r.service()).collect();
        for service in services {
            match sdk_actions(&code, service) {
                Ok(actions) if actions.is_empty() => problems.push(format!(
                    "found no AWS call (`client.<operation>()`) in {file} {func}: update the \
                     scan in this test"
                )),
                Ok(actions) => {
                    for action in actions {
                        for res in call.touches.iter().filter(|r| r.service() == service) {
                            needed.insert((action.clone(), *res));
                        }
                    }
                }
                Err(e) => problems.push(format!("{file} {func}: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(needed)
    } else {
        Err(problems)
    }
}

fn check_iam(tpl: &Value, sources: &[(String, String)]) -> Vec<String> {
    let (id, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let needed = match needed_grants(sources) {
        Ok(n) => n,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();

    if prop(function, "Role").is_some() {
        problems.push(format!(
            "{id} sets Role: SAM then ignores Policies; keep the generated role and its \
             inline Statements"
        ));
    }
    // Each allowed resource, as the template must write it.
    let mut ids = BTreeMap::new();
    for res in Res::ALL {
        match resource_id(tpl, function, res) {
            Ok(id) => {
                ids.insert(res, id);
            }
            Err(e) => problems.push(e),
        }
    }
    let resource_of = |v: &Value| -> Option<Res> {
        Res::ALL.into_iter().find(|res| {
            let Some(id) = ids.get(res) else {
                return false;
            };
            match res {
                // The table itself: Query, GetItem, … need no index ARN.
                Res::Releases | Res::Devices => {
                    get_att(v).is_some_and(|(r, a)| &r == id && a == "Arn")
                }
                // The bucket's objects, not the bucket.
                Res::BundleObjects => {
                    sub_string(v).is_some_and(|s| s == format!("${{{id}.Arn}}/*"))
                }
            }
        })
    };

    let policies = prop(function, "Policies")
        .map(one_or_many)
        .unwrap_or_default();
    let mut granted = BTreeSet::new();
    for policy in policies {
        let Some(statements) = policy.get("Statement") else {
            problems.push(format!(
                "{id} Policies: {} is not an inline policy document; write Statements (SAM \
                 policy templates and managed policies grant more than the serving path needs)",
                show(policy)
            ));
            continue;
        };
        for st in one_or_many(statements) {
            for key in ["NotAction", "NotResource", "Principal"] {
                if st.get(key).is_some() {
                    problems.push(format!("{id}: a statement uses {key}: {}", show(st)));
                }
            }
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let actions: Vec<String> = st
                .get("Action")
                .map(one_or_many)
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.as_str().map(str::to_owned).unwrap_or_else(|| show(a)))
                .collect();
            let resources: Vec<&Value> = st.get("Resource").map(one_or_many).unwrap_or_default();
            if resources.is_empty() {
                problems.push(format!("{id}: a statement without Resource: {}", show(st)));
            }
            for action in &actions {
                if action.contains('*') || action.contains('?') {
                    problems.push(format!("{id} grants the wildcard action {action}"));
                }
            }
            for resource in resources {
                let Some(res) = resource_of(resource) else {
                    problems.push(format!(
                        "{id} grants {actions:?} on {}: the only resources allowed are this \
                         stack's tables (`!GetAtt <table>.Arn`) and the bundle bucket's objects \
                         (`!Sub \"${{<bucket>.Arn}}/*\"`), {ids:?}",
                        show(resource)
                    ));
                    continue;
                };
                for action in &actions {
                    granted.insert((action.clone(), res));
                }
            }
        }
    }
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{id} lacks grants the serving path needs (it would get AccessDenied): {missing:?}"
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "{id} grants what the serving path never calls (least privilege): {extra:?}; the \
             serving path needs exactly {needed:?}"
        ));
    }
    problems
}

/// Every `state.<store>.<method>(` call of the handlers and the Lambda's init is in
/// SERVING_PATH, so the IAM check follows every AWS call a request can make.
fn check_serving_path_complete(sources: &[(String, String)]) -> Vec<String> {
    let listed: BTreeSet<&str> = SERVING_PATH.iter().map(|c| c.called_as).collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (file, code) in sources.iter().filter(|(p, _)| {
        p == "src/runtime/lambda.rs" || p == "src/api.rs" || p.starts_with("src/api/")
    }) {
        for call in state_calls(code) {
            if !listed.contains(call.as_str()) {
                problems.push(format!(
                    "{file} calls state.{call}, which SERVING_PATH in this test does not list: \
                     add it (with its DynamoDB/S3 implementation), so the IAM check sees its \
                     AWS calls"
                ));
            }
            seen.insert(call);
        }
    }
    for call in listed {
        if !seen.contains(call) {
            problems.push(format!(
                "SERVING_PATH lists state.{call}, but no handler calls it any more: remove it"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// (e) runtime and build.

fn check_runtime(tpl: &Value, cargo_toml: &str) -> Vec<String> {
    let (id, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let runtime = prop(function, "Runtime").and_then(Value::as_str);
    if runtime != Some("provided.al2023") {
        problems.push(format!(
            "{id}: Runtime must be provided.al2023 (a custom runtime, Amazon Linux 2023), is \
             {runtime:?}"
        ));
    }
    let arch: Vec<&str> = prop(function, "Architectures")
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if arch != ["arm64"] {
        problems.push(format!(
            "{id}: Architectures must be [arm64] (what sam build cross-compiles), is {arch:?}"
        ));
    }
    let metadata = function.get("Metadata");
    let build_method = metadata
        .and_then(|m| m.get("BuildMethod"))
        .and_then(Value::as_str);
    if build_method != Some("rust-cargolambda") {
        problems.push(format!(
            "{id}: Metadata.BuildMethod must be rust-cargolambda, is {build_method:?}"
        ));
    }
    let binary = metadata
        .and_then(|m| m.get("BuildProperties"))
        .and_then(|b| b.get("Binary"))
        .and_then(Value::as_str);
    if binary != Some("updraft") {
        problems.push(format!(
            "{id}: Metadata.BuildProperties.Binary must be updraft (the binary that runs the \
             Lambda runtime), is {binary:?}"
        ));
    }
    let bins: Vec<&str> = cargo_toml
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| {
            section
                .lines()
                .skip(1)
                .take_while(|l| !l.trim_start().starts_with('['))
                .find_map(|l| l.trim().strip_prefix("name"))
                .and_then(|rest| rest.split('"').nth(1))
        })
        .collect();
    if let Some(binary) = binary
        && !bins.contains(&binary)
    {
        problems.push(format!(
            "{id} builds binary {binary}, but Cargo.toml's [[bin]] targets are {bins:?}"
        ));
    }
    // The function's timeout must outlast the SDK's bounds (src/aws.rs), so a slow table gets
    // the function's own JSON 503 rather than a Lambda timeout, and answer before the plugin
    // gives up (its responseTimeout is 20 s).
    let timeout = prop(function, "Timeout").and_then(|t| match ref_target(t) {
        Some(param) => tpl.get("Parameters")?.get(param)?.get("Default")?.as_u64(),
        None => t.as_u64(),
    });
    let sdk_bound = [AwsTimeouts::SERVING, AwsTimeouts::STATS]
        .iter()
        .map(|t| t.operation)
        .max()
        .unwrap_or_default();
    match timeout.map(Duration::from_secs) {
        Some(t) if t > sdk_bound && t <= PLUGIN_TIMEOUT => {}
        other => problems.push(format!(
            "{id}: Timeout (default) must exceed the SDK's longest operation bound ({sdk_bound:?}, \
             src/aws.rs) and be at most the plugin's {PLUGIN_TIMEOUT:?}, is {other:?}"
        )),
    }
    // The stage trap: a named stage puts /<stage> in front of every path the router sees.
    let named_stage = resources_of(tpl, "AWS::Serverless::HttpApi")
        .values()
        .any(|api| prop(api, "StageName").is_some_and(|s| s.as_str() != Some("$default")));
    let ignore_stage = function_env(tpl, function)
        .get("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH")
        .and_then(|v| v.as_str().map(str::to_owned));
    if named_stage && ignore_stage.as_deref() != Some("true") {
        problems.push(
            "an HttpApi has a named stage and the function does not set \
             AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true: every route would 404"
                .into(),
        );
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// (f) the public surface is bounded and recorded.

/// The fields an HTTP API access log line must carry: who (the client's address as API Gateway
/// saw it), what, and how it went.
const ACCESS_LOG_FIELDS: &[&str] = &[
    "$context.identity.sourceIp",
    "$context.requestId",
    "$context.routeKey",
    "$context.status",
];

fn parameter_default(tpl: &Value, name: &str) -> Option<u64> {
    tpl.get("Parameters")?.get(name)?.get("Default")?.as_u64()
}

fn check_exposure(tpl: &Value) -> Vec<String> {
    let (id, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    // Reserved concurrency: `!Ref ReservedConcurrency`, or `!If [cond, !Ref …, !Ref AWS::NoValue]`
    // for the opt-out, with a default that reserves (bounds) something.
    let reserved = prop(function, "ReservedConcurrentExecutions");
    let param = reserved.and_then(|r| {
        ref_target(r).or_else(|| match intrinsic(r)? {
            (name, Value::Sequence(seq)) if name == "Fn::If" && seq.len() == 3 => {
                ref_target(&seq[1])
            }
            _ => None,
        })
    });
    match param.as_deref() {
        Some(p) if p == "ReservedConcurrency" => match parameter_default(tpl, p) {
            Some(n) if n >= 1 => {}
            other => problems.push(format!(
                "parameter ReservedConcurrency must default to a reservation (>= 1), is {other:?}"
            )),
        },
        _ => problems.push(format!(
            "{id}: ReservedConcurrentExecutions must be `!Ref ReservedConcurrency` (it bounds what \
             a flood costs, and is all that bounds a Function URL), is {:?}",
            reserved.map(show)
        )),
    }
    // Every HTTP API: throttled, and logging each request with its source address to a log
    // group of this stack that expires its lines.
    let groups = resources_of(tpl, "AWS::Logs::LogGroup");
    for (api_id, api) in resources_of(tpl, "AWS::Serverless::HttpApi") {
        let route = prop(api, "DefaultRouteSettings");
        for limit in ["ThrottlingBurstLimit", "ThrottlingRateLimit"] {
            if route.and_then(|r| r.get(limit)).is_none() {
                problems.push(format!("{api_id}: DefaultRouteSettings.{limit} is not set"));
            }
        }
        let Some(logs) = prop(api, "AccessLogSettings") else {
            problems.push(format!("{api_id}: no AccessLogSettings"));
            continue;
        };
        let format = logs.get("Format").and_then(Value::as_str).unwrap_or("");
        for field in ACCESS_LOG_FIELDS {
            if !format.contains(field) {
                problems.push(format!("{api_id}: the access log format lacks {field}"));
            }
        }
        let dest = logs.get("DestinationArn").and_then(get_att);
        match dest {
            Some((group, attr)) if attr == "Arn" && groups.contains_key(&group) => {
                let retention = prop(groups[&group], "RetentionInDays");
                if retention.is_none() {
                    problems.push(format!(
                        "{group}: the access log group has no RetentionInDays (it would keep \
                         and bill every line forever)"
                    ));
                }
            }
            _ => problems.push(format!(
                "{api_id}: AccessLogSettings.DestinationArn must be `!GetAtt <a log group of this \
                 stack>.Arn`, is {:?}",
                logs.get("DestinationArn").map(show)
            )),
        }
    }
    problems
}

// (g) logging.

/// The function logs JSON, so Lambda filters by level: its own START/END/REPORT lines only at
/// WARN (they would be billed on every invocation), the application's lines at the level the
/// `LogLevel` parameter maps to, never above INFO, because the metric lines carry no `level`
/// and Lambda reads them as INFO. `RUST_LOG` is the same parameter, and the metrics interval
/// is at most what src/metrics.rs allows.
fn check_logging(tpl: &Value) -> Vec<String> {
    let (id, function) = match the_function(tpl) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let Some(config) = prop(function, "LoggingConfig") else {
        return vec![format!("{id} has no LoggingConfig")];
    };
    let field = |k: &str| config.get(k).and_then(Value::as_str);
    if field("LogFormat") != Some("JSON") {
        problems.push(format!(
            "{id}: LoggingConfig.LogFormat must be JSON (Lambda filters levels only then), is {:?}",
            config.get("LogFormat").map(show)
        ));
    }
    if field("SystemLogLevel") != Some("WARN") {
        problems.push(format!(
            "{id}: LoggingConfig.SystemLogLevel must be WARN (START/END/REPORT on every              invocation otherwise), is {:?}",
            config.get("SystemLogLevel").map(show)
        ));
    }
    // `!FindInMap [Map, !Ref LogLevel, Key]`, each allowed LogLevel mapped to DEBUG or INFO.
    let app_level = config.get("ApplicationLogLevel");
    let find = app_level.and_then(intrinsic).and_then(|(name, arg)| {
        let seq = arg.as_sequence()?;
        (name == "Fn::FindInMap" && seq.len() == 3).then_some(seq)
    });
    match find {
        Some(seq) if ref_target(&seq[1]).as_deref() == Some("LogLevel") => {
            let (map, key) = (seq[0].as_str().unwrap_or(""), seq[2].as_str().unwrap_or(""));
            let allowed = tpl
                .get("Parameters")
                .and_then(|p| p.get("LogLevel"))
                .and_then(|p| p.get("AllowedValues"))
                .and_then(Value::as_sequence);
            let Some(allowed) = allowed else {
                problems.push("parameter LogLevel has no AllowedValues to map".into());
                return problems;
            };
            for value in allowed.iter().filter_map(Value::as_str) {
                let level = tpl
                    .get("Mappings")
                    .and_then(|m| m.get(map))
                    .and_then(|m| m.get(value))
                    .and_then(|m| m.get(key))
                    .and_then(Value::as_str);
                if !matches!(level, Some("TRACE" | "DEBUG" | "INFO")) {
                    problems.push(format!(
                        "LogLevel {value} maps to ApplicationLogLevel {level:?}: it must be                          TRACE, DEBUG or INFO, or Lambda drops the metric lines"
                    ));
                }
            }
        }
        _ => problems.push(format!(
            "{id}: LoggingConfig.ApplicationLogLevel must be `!FindInMap [<map>, !Ref LogLevel,              <key>]`, is {:?}",
            app_level.map(show)
        )),
    }
    let env = function_env(tpl, function);
    if env.get("RUST_LOG").and_then(ref_target).as_deref() != Some("LogLevel") {
        problems.push(format!("{id}: RUST_LOG must be `!Ref LogLevel`"));
    }
    let interval = env
        .get("UPDRAFT_METRICS_INTERVAL")
        .and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .and_then(|v| v.parse::<u64>().ok());
    if interval.is_none_or(|n| n > updraft::runtime::emf::MAX_INTERVAL.as_secs()) {
        problems.push(format!(
            "{id}: UPDRAFT_METRICS_INTERVAL must be a number of seconds up to {}, is {:?}",
            updraft::runtime::emf::MAX_INTERVAL.as_secs(),
            env.get("UPDRAFT_METRICS_INTERVAL").map(show)
        ));
    }
    problems
}

/// The AWS SDK's legacy HTTPS client (hyper 0.14, rustls 0.21) is not in the build.
fn legacy_clients(cargo_lock: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut name = None;
    for line in cargo_lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            let v = v.trim_matches('"');
            let legacy = match n.as_str() {
                "hyper" => v.starts_with("0."),
                "rustls" => v.starts_with("0.21.") || v.starts_with("0.20."),
                "hyper-rustls" => v.starts_with("0.24.") || v.starts_with("0.23."),
                _ => false,
            };
            if legacy {
                found.push(format!("{n} {v}"));
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The tests.

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "template.yaml and the code disagree ({what}):\n  - {}",
        problems.join("\n  - ")
    );
}

/// The router as `updraft serve` builds it: the embedded store, so local-only routes exist too.
fn local_router() -> (axum::Router, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let state = updraft::runtime::backend::open_embedded_state(
        data.path(),
        Duration::ZERO,
        Duration::from_secs(60),
    )
    .unwrap();
    (router(Arc::new(state)), data)
}

#[test]
fn environment_variables_match() {
    assert_none("environment", check_env(&template(), &sources()));
}

#[test]
fn table_keys_match_the_stores() {
    assert_none("table keys", check_table_keys(&template()));
}

#[tokio::test]
async fn routes_match_the_router() {
    let (app, _data) = local_router();
    assert_none(
        "routes",
        check_routes(&template(), &app, &sources(), NOT_YET_SERVED).await,
    );
}

#[test]
fn iam_grants_exactly_the_serving_path() {
    assert_none("IAM", check_iam(&template(), &sources()));
}

#[test]
fn serving_path_is_complete() {
    assert_none("serving path", check_serving_path_complete(&sources()));
}

#[test]
fn runtime_and_build_match_the_crate() {
    assert_none("runtime", check_runtime(&template(), &read("Cargo.toml")));
}

#[test]
fn the_public_surface_is_bounded_and_logged() {
    assert_none("exposure", check_exposure(&template()));
}

#[test]
fn logging_is_json_without_per_invocation_platform_lines() {
    assert_none("logging", check_logging(&template()));
    // The metric lines are what a level above INFO would drop: they carry no level.
    let key = updraft::domain::check_counts::CountKey {
        app: "a".into(),
        channel: "c".into(),
        version: "v".into(),
        decision: "offer",
    };
    let line: serde_json::Value =
        serde_json::from_str(&updraft::domain::check_counts::emf_line(&key, 1, 0)).unwrap();
    assert!(line.get("level").is_none(), "{line}");
}

#[test]
fn the_sdk_has_no_legacy_https_client() {
    let found = legacy_clients(&read("Cargo.lock"));
    assert!(
        found.is_empty(),
        "Cargo.lock has the AWS SDK's legacy HTTPS client ({found:?}): build the aws-* crates \
         with default-features = false and the default-https-client feature"
    );
    // The scan itself sees such an entry.
    let legacy = "[[package]]\nname = \"hyper\"\nversion = \"0.14.32\"\n";
    assert_eq!(legacy_clients(legacy), ["hyper 0.14.32"]);
}

#[test]
fn source_scans_see_what_they_should() {
    let reads = env_reads(&code_only(
        r#"
        let a = std::env::var("UPDRAFT_A");
        let b = env_required("UPDRAFT_B")?;
        #[arg(long, env = "UPDRAFT_C")]
        // std::env::var("UPDRAFT_COMMENTED")
        Err(ConfigError::Invalid { name: "UPDRAFT_NOT_A_READ", why })
        "#,
    ));
    assert_eq!(
        reads,
        ["UPDRAFT_A", "UPDRAFT_B", "UPDRAFT_C"]
            .map(String::from)
            .into()
    );

    let file = r#"
        trait T { fn record(&self); }
        impl T for S {
            fn record(&self) {
                let items = self.items();
                self.client
                    .transact_write_items()
                    .send();
            }
        }
        fn items() -> Vec<X> { vec![Update::builder().table_name("}").build()] }
        fn unused() { client.delete_table().send(); }
        fn counts() { let page = client
            .batch_get_item()
            .send(); }
    "#;
    let record = reachable_code(file, "record").unwrap();
    assert_eq!(
        sdk_actions(&record, "dynamodb"),
        Ok(["dynamodb:UpdateItem"].map(String::from).into())
    );
    assert_eq!(
        sdk_actions(&reachable_code(file, "counts").unwrap(), "dynamodb"),
        Ok(["dynamodb:BatchGetItem"].map(String::from).into())
    );
    assert!(sdk_actions("client.transact_write_items().send()", "dynamodb").is_err());
    assert_eq!(
        state_calls(
            "state\n  .devices\n  .set_channel(a); self.state.stats.record(b); state.public_url.clone()"
        ),
        ["devices.set_channel", "stats.record"]
            .map(String::from)
            .into()
    );
}

/// A route the router does not serve yet passes only while it is allow-listed, and an
/// allow-listed route the router serves fails until it is taken off the list.
#[tokio::test]
async fn the_not_yet_served_list_is_temporary() {
    let original = read("template.yaml");
    let sources = sources();
    let (app, _data) = local_router();
    let health = "        Health:\n";
    assert!(
        original.contains(health),
        "expected a Health event in template.yaml"
    );
    let ahead = parse_template(&original.replacen(
        health,
        "        Later:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref \
         UpdraftApi\n            Path: /not_served_yet\n            Method: POST\n        Health:\n",
        1,
    ));
    assert!(
        !check_routes(&ahead, &app, &sources, &[]).await.is_empty(),
        "a route the router does not serve must fail when it is not allow-listed"
    );
    assert_none(
        "routes, allow-listed",
        check_routes(&ahead, &app, &sources, &["/not_served_yet"]).await,
    );
    let stale = check_routes(&template(), &app, &sources, &["/updates"]).await;
    assert!(
        stale
            .iter()
            .any(|p| p.contains("remove it from NOT_YET_SERVED")),
        "an allow-listed route the router serves must be reported: {stale:?}"
    );
}

/// Each check must fail on a template broken in the way it guards against.
#[tokio::test]
async fn checks_catch_broken_templates() {
    let original = read("template.yaml");
    let sources = sources();
    let cargo_toml = read("Cargo.toml");
    let (app, _data) = local_router();

    let broken = |from: &str, to: &str| {
        assert!(
            original.contains(from),
            "this test's fixture expects template.yaml to contain {from:?}"
        );
        parse_template(&original.replacen(from, to, 1))
    };
    let health = "        Health:\n";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a variable the Lambda reads is missing",
            broken("          UPDRAFT_CACHE_TTL: !Ref CacheTtl\n", ""),
            "env",
        ),
        (
            "the devices table's variable is missing",
            broken("          UPDRAFT_DEVICES_TABLE: !Ref DevicesTable\n", ""),
            "env",
        ),
        (
            "the template sets a variable nothing reads",
            broken(
                "          RUST_LOG: !Ref LogLevel\n",
                "          RUST_LOG: !Ref LogLevel\n          UPDRAFT_CACHE_TIME: \"5\"\n",
            ),
            "env",
        ),
        (
            "the sort key is renamed",
            broken(
                "        - AttributeName: sk\n          KeyType: RANGE",
                "        - AttributeName: pk\n          KeyType: RANGE",
            ),
            "keys",
        ),
        (
            "both keys are RANGE",
            broken("          KeyType: HASH", "          KeyType: RANGE"),
            "keys",
        ),
        (
            "the sort key is a number",
            broken(
                "        - AttributeName: sk\n          AttributeType: S",
                "        - AttributeName: sk\n          AttributeType: N",
            ),
            "keys",
        ),
        (
            "the devices table's TTL is on another attribute",
            broken(
                "        AttributeName: expires_at",
                "        AttributeName: ttl",
            ),
            "keys",
        ),
        (
            "the update route is misspelt",
            broken("            Path: /updates", "            Path: /update"),
            "routes",
        ),
        (
            "the stats route is missing",
            broken("            Path: /stats", "            Path: /statistics"),
            "routes",
        ),
        (
            "the health route has the wrong method",
            broken(
                "            Path: /health\n            Method: GET",
                "            Path: /health\n            Method: POST",
            ),
            "routes",
        ),
        (
            "the local-only bundle route is exposed",
            broken(
                health,
                "        Bundles:\n          Type: HttpApi\n          Properties:\n            \
                 ApiId: !Ref UpdraftApi\n            Path: /bundles/{key+}\n            \
                 Method: GET\n        Health:\n",
            ),
            "routes",
        ),
        (
            "a wildcard action",
            broken(
                "                - dynamodb:Query",
                "                - dynamodb:*",
            ),
            "iam",
        ),
        (
            "an action the serving path does not call",
            broken(
                "                - dynamodb:Query",
                "                - dynamodb:Query\n                - dynamodb:DeleteItem",
            ),
            "iam",
        ),
        (
            "a grant the serving path needs is missing",
            broken("                - dynamodb:PutItem\n", ""),
            "iam",
        ),
        (
            "GetObject on every resource",
            broken(
                "              Resource: !Sub \"${BundleBucket.Arn}/*\"",
                "              Resource: \"*\"",
            ),
            "iam",
        ),
        (
            "the devices grants on the releases table",
            broken(
                "              Resource: !GetAtt DevicesTable.Arn",
                "              Resource: !GetAtt ReleasesTable.Arn",
            ),
            "iam",
        ),
        (
            "a SAM policy template",
            broken(
                "      Policies:\n",
                "      Policies:\n        - DynamoDBReadPolicy:\n            TableName: !Ref \
                 ReleasesTable\n",
            ),
            "iam",
        ),
        (
            "x86_64",
            broken("        - arm64", "        - x86_64"),
            "runtime",
        ),
        (
            "another binary",
            broken("        Binary: updraft", "        Binary: bootstrap"),
            "runtime",
        ),
        (
            "a timeout shorter than the SDK's bounds",
            broken(
                "    Default: 10\n    MinValue: 7",
                "    Default: 4\n    MinValue: 1",
            ),
            "runtime",
        ),
        (
            "no reserved concurrency",
            broken(
                "      ReservedConcurrentExecutions: !If [ReserveConcurrency, !Ref ReservedConcurrency, !Ref AWS::NoValue]\n",
                "",
            ),
            "exposure",
        ),
        (
            "a reservation that defaults to none",
            broken(
                "    Default: 100\n    MinValue: 0",
                "    Default: 0\n    MinValue: 0",
            ),
            "exposure",
        ),
        (
            "access logs without the source address",
            broken("\"ip\":\"$context.identity.sourceIp\",", ""),
            "exposure",
        ),
        (
            "access logs to a group that keeps them forever",
            broken(
                "    UpdateReplacePolicy: Retain\n    Properties:\n      RetentionInDays: !Ref LogRetentionDays\n",
                "    UpdateReplacePolicy: Retain\n    Properties:\n      LogGroupClass: STANDARD\n",
            ),
            "exposure",
        ),
        (
            "no access logs",
            broken("      AccessLogSettings:\n", "      AccessLogSettingz:\n"),
            "exposure",
        ),
        (
            "no throttling",
            broken("        ThrottlingRateLimit: !Ref ThrottleRate\n", ""),
            "exposure",
        ),
        (
            "text logs",
            broken("        LogFormat: JSON\n", "        LogFormat: Text\n"),
            "logging",
        ),
        (
            "START/END/REPORT on every invocation",
            broken(
                "        SystemLogLevel: WARN\n",
                "        SystemLogLevel: INFO\n",
            ),
            "logging",
        ),
        (
            "a log level that drops the metric lines",
            broken(
                "    warn:\n      Application: INFO\n",
                "    warn:\n      Application: WARN\n",
            ),
            "logging",
        ),
        (
            "metrics written less often than every minute",
            broken(
                "          UPDRAFT_METRICS_INTERVAL: \"60\"\n",
                "          UPDRAFT_METRICS_INTERVAL: \"300\"\n",
            ),
            "logging",
        ),
        (
            "the old custom runtime",
            broken(
                "      Runtime: provided.al2023",
                "      Runtime: provided.al2",
            ),
            "runtime",
        ),
    ];
    for (what, tpl, check) in cases {
        let problems = match check {
            "env" => check_env(&tpl, &sources),
            "keys" => check_table_keys(&tpl),
            "routes" => check_routes(&tpl, &app, &sources, NOT_YET_SERVED).await,
            "iam" => check_iam(&tpl, &sources),
            "runtime" => check_runtime(&tpl, &cargo_toml),
            "exposure" => check_exposure(&tpl),
            "logging" => check_logging(&tpl),
            other => unreachable!("{other}"),
        };
        assert!(
            !problems.is_empty(),
            "the {check} check did not notice: {what}"
        );
    }
}
