//! Pausing and resuming releases: by an operator (`pause`, `resume`), and by itself when its
//! evidence says it fails on too many devices from too many networks (the stats path). Either
//! way the rule of `domain::pause` decides, and the change is one revision-conditioned write
//! with its history entry (`HistoryStore`), so a pause decided on one version's evidence never
//! lands on an item that meanwhile serves another.

use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::evidence::{Evidence, EvidenceKey};
use crate::domain::health::{AutoPausePolicy, Health, should_pause};
use crate::domain::history::Expected;
use crate::domain::item::{ItemExt, attr};
use crate::domain::keys::{Target, parse_release_sk, release_sk};
use crate::domain::pause::{
    PauseRequest, ResumeRequest, pause_entry, paused, resume_entry, resumed,
};
use crate::domain::snapshot::AppSnapshot;
use crate::domain::stats::fold::{CounterKey, failures, installs};
use crate::ops::OperatorStores;
use crate::ops::apps::{require_app, require_channel};
use crate::store::{HistoryStore, ItemWriter, StoreError};

/// Which of the two a conditional change is.
enum PauseChange<'a> {
    Pause(&'a PauseRequest),
    Resume(&'a ResumeRequest),
}

/// Applies a pause or resume to release item `channel`/`target` under the rule, with its
/// history entry, at `at_micros`. `false` when the rule refuses (another version, already
/// paused, within the cooldown) or the item is gone. A write that lost a race with another
/// change is judged again once on the new item.
async fn apply(
    items: &dyn ItemWriter,
    history: &dyn HistoryStore,
    app_id: &str,
    channel: &str,
    target: Target,
    change: PauseChange<'_>,
    at_micros: u64,
) -> Result<bool, StoreError> {
    let sk = release_sk(channel, target);
    for attempt in 0..2 {
        let Some(item) = items.get_item(app_id, &sk).await? else {
            return Ok(false);
        };
        let (next, entry) = match &change {
            PauseChange::Pause(p) => (paused(&item, p), pause_entry(channel, target, p, at_micros)),
            PauseChange::Resume(r) => (
                resumed(&item, r),
                resume_entry(channel, target, r, at_micros),
            ),
        };
        let Some(mut next) = next else {
            return Ok(false);
        };
        let expected = Expected::of(Some(&item));
        next.set_whole(attr::REVISION, expected.next());
        match history
            .change_with_history(app_id, &sk, expected, &next, &entry)
            .await
        {
            Ok(()) => return Ok(true),
            Err(StoreError::Conflict(_)) if attempt == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Pauses `channel`/`target` if the rule allows; `true` when it did.
pub async fn pause_release(
    items: &dyn ItemWriter,
    history: &dyn HistoryStore,
    app_id: &str,
    channel: &str,
    target: Target,
    pause: &PauseRequest,
    at_micros: u64,
) -> Result<bool, StoreError> {
    let change = PauseChange::Pause(pause);
    apply(items, history, app_id, channel, target, change, at_micros).await
}

/// Resumes `channel`/`target` if it still serves the version; `true` when it did.
pub async fn resume_release(
    items: &dyn ItemWriter,
    history: &dyn HistoryStore,
    app_id: &str,
    channel: &str,
    target: Target,
    resume: &ResumeRequest,
    at_micros: u64,
) -> Result<bool, StoreError> {
    let change = PauseChange::Resume(resume);
    apply(items, history, app_id, channel, target, change, at_micros).await
}

/// Pauses the releases whose evidence is now strong enough (the stats path, after a batch
/// recorded new failures). Best effort: the events are already stored, so a failure here is
/// only logged.
pub async fn auto_pause(
    items: &dyn ItemWriter,
    history: &dyn HistoryStore,
    snap: &AppSnapshot,
    evidence: &[(EvidenceKey, Evidence)],
    now_micros: u64,
) {
    let now = now_micros / 1_000_000;
    for (key, evidence) in evidence {
        let Some((channel, target)) = parse_release_sk(&key.sk) else {
            continue;
        };
        let Some(Ok(release)) = snap.channels.get(channel).and_then(|c| c.get(target)) else {
            continue;
        };
        if release.paused || release.version_text != key.version {
            continue;
        }
        let policy = AutoPausePolicy::from_items(&release.item, Some(&snap.app_item));
        let Some(reason) = should_pause(&policy, *evidence, release.resumed_at, now) else {
            continue;
        };
        let pause = PauseRequest {
            version: key.version.clone(),
            reason: reason.clone(),
            now,
            cooldown_secs: policy.cooldown_secs,
            who: None,
        };
        match pause_release(
            items,
            history,
            &key.app_id,
            channel,
            target,
            &pause,
            now_micros,
        )
        .await
        {
            Ok(true) => {
                tracing::warn!(app_id = %key.app_id, sk = %key.sk, version = %key.version, reason, "release auto-paused")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(app_id = %key.app_id, sk = %key.sk, error = %e, "auto-pause failed")
            }
        }
    }
}

/// What `pause` and `resume` did.
#[derive(Debug, Clone, Serialize)]
pub struct PauseState {
    pub app_id: String,
    pub channel: String,
    pub platform: Target,
    pub version: String,
    pub paused: bool,
    /// False when there was nothing to do (already paused).
    pub changed: bool,
    /// A resume's baseline: the counts so far, which the next automatic pause discounts.
    #[serde(skip)]
    pub baseline: Option<Health>,
}

impl fmt::Display for PauseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (app, version, channel, platform) =
            (&self.app_id, &self.version, &self.channel, self.platform);
        match (self.paused, self.changed, self.baseline) {
            (true, true, _) => write!(f, "Paused {app} {version} on {channel}/{platform}."),
            (true, false, _) => write!(
                f,
                "{app} {version} on {channel}/{platform} is already paused."
            ),
            (false, _, b) => {
                let b = b.unwrap_or_default();
                write!(
                    f,
                    "Resumed {app} {version} on {channel}/{platform} (counting failures from now: {} installs, {} failures so far).",
                    b.installs, b.failures
                )
            }
        }
    }
}

/// The version `channel`/`target` serves, or a one-sentence error naming what exists.
async fn served_version(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<String> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let item = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!(
            "channel {channel} of {app_id} serves nothing on {target} (see `updraft channel list --app {app_id}`)"
        )
    })?;
    match item.text(attr::VERSION) {
        Some(v) => Ok(v.to_owned()),
        None => bail!("the release item {sk} of {app_id} has no version"),
    }
}

/// `updraft pause`.
pub async fn pause(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    reason: &str,
) -> anyhow::Result<PauseState> {
    let version = served_version(stores, app_id, channel, target).await?;
    let req = PauseRequest {
        version: version.clone(),
        reason: reason.to_owned(),
        now: stores.clock.now(),
        cooldown_secs: 0,
        who: Some(stores.who().await?),
    };
    let (items, history) = (stores.items.as_ref(), stores.history.as_ref());
    let at = stores.clock.now_micros();
    let changed = pause_release(items, history, app_id, channel, target, &req, at).await?;
    Ok(PauseState {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        platform: target,
        version,
        paused: true,
        changed,
        baseline: None,
    })
}

/// `updraft resume`: lifts the pause and records the counts so far as the new baseline.
pub async fn resume(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<PauseState> {
    let version = served_version(stores, app_id, channel, target).await?;
    let key = CounterKey {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        version: version.clone(),
    };
    let counts = stores.stats.counts(&key).await?;
    let baseline = Health {
        installs: installs(&counts),
        failures: failures(&counts),
    };
    let resume = ResumeRequest {
        version: version.clone(),
        now: stores.clock.now(),
        baseline,
        who: stores.who().await?,
    };
    let (items, history) = (stores.items.as_ref(), stores.history.as_ref());
    let at = stores.clock.now_micros();
    if !resume_release(items, history, app_id, channel, target, &resume, at).await? {
        bail!(
            "{channel}/{target} of {app_id} changed while resuming (it no longer serves {version}); see `updraft channel list --app {app_id}`"
        );
    }
    Ok(PauseState {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        platform: target,
        version,
        paused: false,
        changed: true,
        baseline: Some(baseline),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::AUTOMATIC;
    use crate::domain::item::AttrValue;
    use crate::domain::release::tests::{SUM, item, s};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{ItemQuery, ItemWriter};

    const ALL: Target = Target::All;

    async fn pause_release(
        store: &EmbeddedStore,
        app: &str,
        sk: &str,
        req: &PauseRequest,
    ) -> Result<bool, StoreError> {
        let (channel, target) = parse_release_sk(sk).unwrap();
        super::pause_release(store, store, app, channel, target, req, req.now * 1_000_000).await
    }

    async fn resume_release(
        store: &EmbeddedStore,
        app: &str,
        sk: &str,
        req: &ResumeRequest,
    ) -> Result<bool, StoreError> {
        let (channel, target) = parse_release_sk(sk).unwrap();
        super::resume_release(store, store, app, channel, target, req, req.now * 1_000_000).await
    }

    #[tokio::test]
    async fn pause_is_conditional_and_resume_records_a_baseline() {
        let _ = ALL;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let sk = "release#production#all";
        store
            .put_item(
                "com.example.app",
                sk,
                &item(&[
                    ("version", s("1.0.1")),
                    ("bundle", s("k")),
                    ("checksum", s(SUM)),
                ]),
            )
            .await
            .unwrap();
        let req = |version: &str, now| PauseRequest {
            who: None,
            version: version.into(),
            reason: "bad".into(),
            now,
            cooldown_secs: 100,
        };
        assert!(
            !pause_release(&store, "com.example.app", sk, &req("1.0.0", 1000))
                .await
                .unwrap(),
            "another version"
        );
        assert!(
            pause_release(&store, "com.example.app", sk, &req("1.0.1", 1000))
                .await
                .unwrap()
        );
        assert!(
            !pause_release(&store, "com.example.app", sk, &req("1.0.1", 1000))
                .await
                .unwrap(),
            "already paused"
        );
        assert!(
            resume_release(
                &store,
                "com.example.app",
                sk,
                &ResumeRequest {
                    version: "1.0.1".into(),
                    now: 2000,
                    baseline: Health {
                        installs: 5,
                        failures: 7
                    },
                    who: "alice".into(),
                }
            )
            .await
            .unwrap()
        );
        assert!(
            !pause_release(&store, "com.example.app", sk, &req("1.0.1", 2050))
                .await
                .unwrap(),
            "cooldown"
        );
        assert!(
            pause_release(&store, "com.example.app", sk, &req("1.0.1", 2100))
                .await
                .unwrap()
        );
        assert!(
            !resume_release(
                &store,
                "com.example.app",
                "release#x#all",
                &ResumeRequest {
                    version: "1.0.1".into(),
                    now: 1,
                    baseline: Health::default(),
                    who: "alice".into(),
                }
            )
            .await
            .unwrap()
        );
        let item = store
            .get_item("com.example.app", sk)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            item.get("pause_baseline_failures"),
            Some(&AttrValue::N(7.into()))
        );
        assert_eq!(item.get("pause_reason"), Some(&AttrValue::S("bad".into())));
        // Every applied change wrote one history entry, in order; refused ones wrote none.
        let history = store
            .query_prefix("com.example.app#history", "", false, None)
            .await
            .unwrap();
        let actions: Vec<_> = history
            .iter()
            .filter_map(|(_, i)| crate::domain::history::HistoryEntry::from_item(i))
            .map(|e| (e.action.as_str(), e.who))
            .collect();
        assert_eq!(
            actions,
            [
                ("auto-pause", AUTOMATIC.to_owned()),
                ("resume", "alice".to_owned()),
                ("auto-pause", AUTOMATIC.to_owned())
            ]
        );
        assert_eq!(crate::domain::history::revision_of(&item), 3);
    }
}
