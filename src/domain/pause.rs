//! Pausing and resuming a release item: the rule (a pause lands only on the version it was
//! decided for, never twice, and not within the cooldown after a resume) and the item it
//! writes, once, for both stores. The stores carry it out as a revision-conditioned change
//! with its history entry, so a pause decided on one version's evidence can never land on an
//! item that meanwhile serves another.

use crate::domain::health::Health;
use crate::domain::history::{AUTOMATIC, HistoryAction, HistoryEntry};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::Target;

/// A pause: of `version`, for `reason`, at `now`; `who` `None` is the automatic pause.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseRequest {
    pub version: String,
    pub reason: String,
    pub now: u64,
    pub cooldown_secs: u64,
    /// Who pauses: an operator (OS user or AWS principal), or `None` for the automatic pause.
    pub who: Option<String>,
}

/// A resume of `version`, recording the counts at this moment so that only later events
/// count towards the next automatic pause.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeRequest {
    pub version: String,
    pub now: u64,
    pub baseline: Health,
    pub who: String,
}

fn serves(item: &Item, version: &str) -> bool {
    item.text(attr::VERSION) == Some(version)
}

/// The release item paused, or `None` when the rule refuses: the item no longer serves the
/// version, is paused already, or was resumed less than `cooldown_secs` ago.
pub fn paused(item: &Item, pause: &PauseRequest) -> Option<Item> {
    let already = item.flag(attr::PAUSED) == Some(true);
    let resumed_recently = item
        .whole(attr::RESUMED_AT)
        .is_some_and(|at| at > pause.now.saturating_sub(pause.cooldown_secs));
    if !serves(item, &pause.version) || already || resumed_recently {
        return None;
    }
    let mut next = item.clone();
    next.set_flag(attr::PAUSED, true);
    next.set_text(attr::PAUSE_REASON, &pause.reason);
    next.set_whole(attr::PAUSED_AT, pause.now);
    Some(next)
}

/// The release item resumed, or `None` when it no longer serves the version.
pub fn resumed(item: &Item, resume: &ResumeRequest) -> Option<Item> {
    if !serves(item, &resume.version) {
        return None;
    }
    let mut next = item.clone();
    next.set_flag(attr::PAUSED, false);
    next.set_whole(attr::RESUMED_AT, resume.now);
    next.set_whole(attr::PAUSE_BASELINE_INSTALLS, resume.baseline.installs);
    next.set_whole(attr::PAUSE_BASELINE_FAILURES, resume.baseline.failures);
    next.remove(attr::PAUSE_REASON);
    next.remove(attr::PAUSED_AT);
    Some(next)
}

/// The history entry of a pause of `target` (`who` `None`: the automatic pause).
pub fn pause_entry(
    channel: &str,
    target: Target,
    pause: &PauseRequest,
    at_micros: u64,
) -> HistoryEntry {
    HistoryEntry {
        at_micros,
        action: if pause.who.is_some() {
            HistoryAction::Pause
        } else {
            HistoryAction::AutoPause
        },
        channel: channel.to_owned(),
        platform: target,
        from_version: Some(pause.version.clone()),
        to_version: Some(pause.version.clone()),
        who: pause.who.clone().unwrap_or_else(|| AUTOMATIC.to_owned()),
        detail: Some(pause.reason.clone()),
    }
}

/// The history entry of a resume of `target`.
pub fn resume_entry(
    channel: &str,
    target: Target,
    resume: &ResumeRequest,
    at_micros: u64,
) -> HistoryEntry {
    HistoryEntry {
        at_micros,
        action: HistoryAction::Resume,
        channel: channel.to_owned(),
        platform: target,
        from_version: Some(resume.version.clone()),
        to_version: Some(resume.version.clone()),
        who: resume.who.clone(),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item::AttrValue;

    fn item(version: &str) -> Item {
        Item::from([(attr::VERSION.to_owned(), AttrValue::S(version.into()))])
    }

    fn pause(version: &str, now: u64) -> PauseRequest {
        PauseRequest {
            version: version.into(),
            reason: "bad".into(),
            now,
            cooldown_secs: 100,
            who: None,
        }
    }

    #[test]
    fn the_rule_refuses_other_versions_repeats_and_the_cooldown() {
        assert!(paused(&item("1.0.1"), &pause("1.0.0", 1000)).is_none());
        let p = paused(&item("1.0.1"), &pause("1.0.1", 1000)).unwrap();
        assert_eq!(p.flag(attr::PAUSED), Some(true));
        assert_eq!(p.text(attr::PAUSE_REASON), Some("bad"));
        assert!(
            paused(&p, &pause("1.0.1", 1000)).is_none(),
            "already paused"
        );
        let r = resumed(
            &p,
            &ResumeRequest {
                version: "1.0.1".into(),
                now: 2000,
                baseline: Health {
                    installs: 5,
                    failures: 7,
                },
                who: "alice".into(),
            },
        )
        .unwrap();
        assert_eq!(r.whole(attr::PAUSE_BASELINE_FAILURES), Some(7));
        assert_eq!(r.text(attr::PAUSE_REASON), None);
        assert!(paused(&r, &pause("1.0.1", 2050)).is_none(), "cooldown");
        assert!(paused(&r, &pause("1.0.1", 2100)).is_some());
    }
}
