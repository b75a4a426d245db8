//! `updraft explain`: why a device gets (or does not get) an update, answered by the update
//! check's own decision function on the live store (no cache), with every rule it passed or
//! stopped at. It only reads.

use serde::Serialize;

use crate::domain::decide::{Decision, decide_traced};
use crate::domain::protocol::{Platform, parse_update_request};
use crate::domain::trace::{Trace, TraceStep};
use crate::ops::OperatorStores;

/// The device as `explain` is told about it.
#[derive(Debug, Clone)]
pub struct DeviceQuestion {
    pub app_id: String,
    pub device_id: String,
    pub platform: Platform,
    pub version_name: String,
    pub version_build: String,
    pub channel: Option<String>,
    pub plugin_version: Option<String>,
    pub emulator: bool,
    pub dev: bool,
    pub key_id: Option<String>,
}

/// The decision for one device, as `explain --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    /// `offer`, `reset`, or the refusal's kind (`up_to_date`, `blocked`, `failed`).
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub trace: Vec<TraceStep>,
}

impl Explained {
    /// The decision in a few words: `offer 1.0.2`, `blocked: release_paused (…)`.
    pub fn headline(&self) -> String {
        match (&self.decision[..], &self.version, self.error) {
            ("offer", Some(v), _) => format!("offer {v}"),
            ("reset", _, _) => "reset to the builtin assets".to_owned(),
            (kind, _, Some(code)) => format!(
                "{kind}: {code} ({})",
                self.message.as_deref().unwrap_or_default()
            ),
            (kind, _, _) => kind.to_owned(),
        }
    }
}

/// The update check's decision for `q` from the live store, with its trace.
pub async fn explain(stores: &OperatorStores, q: &DeviceQuestion) -> anyhow::Result<Explained> {
    let mut body = serde_json::json!({
        "app_id": q.app_id,
        "device_id": q.device_id,
        "platform": q.platform.as_str(),
        "version_name": q.version_name,
        "version_build": q.version_build,
        "version_code": "",
        "version_os": "",
        "plugin_version": q.plugin_version.clone().unwrap_or_default(),
        "is_emulator": q.emulator,
        "is_prod": !q.dev,
        "defaultChannel": q.channel.clone().unwrap_or_default(),
        "custom_id": "",
    });
    if let Some(k) = &q.key_id {
        body["key_id"] = serde_json::Value::String(k.clone());
    }
    let bytes = serde_json::to_vec(&body)?;
    let req = parse_update_request(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the server would refuse this request ({}): {e}; check --device (a UUID), --version-build and --app",
            e.code()
        )
    })?;
    let (snap, device) = tokio::join!(
        stores.releases.load_app(&req.app_id),
        stores.devices.get_device(&req.app_id, &req.device_id)
    );
    let (snap, device) = (snap?, device?);
    let mut trace = Trace::default();
    if let Some(d) = &device {
        trace.0.push(TraceStep {
            rule: "device",
            outcome: match (&d.channel, d.failed_versions.is_empty()) {
                (Some(c), _) => format!(
                    "override to channel {c}; failed versions: {:?}",
                    d.failed_versions
                ),
                (None, false) => format!("failed versions: {:?}", d.failed_versions),
                (None, true) => "known, without override".to_owned(),
            },
        });
    }
    let decision = decide_traced(&req, snap.as_ref(), device.as_ref(), &mut trace);
    Ok(match &decision {
        Decision::Offer { channel, release } => Explained {
            decision: "offer".into(),
            version: Some(release.version_text.clone()),
            error: None,
            message: None,
            channel: Some((*channel).to_owned()),
            trace: trace.0,
        },
        Decision::Reset { channel } => Explained {
            decision: "reset".into(),
            version: Some("builtin".into()),
            error: None,
            message: None,
            channel: Some((*channel).to_owned()),
            trace: trace.0,
        },
        Decision::Refuse(r) => Explained {
            decision: r.code.kind().as_str().to_owned(),
            version: r.version.map(str::to_owned),
            error: Some(r.code.as_str()),
            message: Some(r.message.to_string()),
            channel: r.channel.map(str::to_owned),
            trace: trace.0,
        },
    })
}
