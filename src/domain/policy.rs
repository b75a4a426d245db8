//! Channel policy: the release-item attributes that say *who* may take a channel's bundle and
//! *how* (design.md §3), as opposed to *what* it serves. Policy belongs to the channel: a new
//! release, a rollback or a promotion keeps it unless the operator sets it explicitly.

use crate::domain::item::{AttrValue, Item, attr};

/// The attributes that are channel policy. `link`/`comment` describe one release and the
/// bundle attributes (`version`, `bundle`, `url`, `checksum`, …) are what is served, so neither
/// is kept; pause state belongs to the release that was paused.
pub const POLICY_ATTRS: &[&str] = &[
    attr::DISABLE_AUTO_UPDATE,
    attr::DISABLE_AUTO_UPDATE_UNDER_NATIVE,
    attr::MIN_UPDATE_VERSION,
    attr::ALLOW_EMULATOR,
    attr::ALLOW_DEVICE,
    attr::ALLOW_DEV,
    attr::ALLOW_PROD,
    attr::ALLOW_SELF_ASSIGN,
    attr::AUTO_PAUSE,
    attr::AUTO_PAUSE_MIN_ATTEMPTS,
    attr::AUTO_PAUSE_MIN_NETWORKS,
    attr::AUTO_PAUSE_DEVICES_PER_NETWORK,
    attr::AUTO_PAUSE_THRESHOLD,
    attr::AUTO_PAUSE_COOLDOWN,
];

/// True for a policy attribute.
pub fn is_policy(name: &str) -> bool {
    POLICY_ATTRS.contains(&name)
}

/// The policy attributes an item sets, in `POLICY_ATTRS` order.
pub fn policy_of(item: &Item) -> Vec<(&'static str, &AttrValue)> {
    POLICY_ATTRS
        .iter()
        .filter_map(|name| Some((*name, item.get(*name)?)))
        .collect()
}

/// Copies into `next` every policy attribute of `previous` that `next` does not set itself
/// (explicit flags win). Returns what was kept, as `name=value`, for the operator to read.
pub fn keep_policy(previous: Option<&Item>, next: &mut Item) -> Vec<String> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    for (name, value) in policy_of(previous) {
        if !next.contains_key(name) {
            next.insert(name.to_owned(), value.clone());
            kept.push(format!("{name}={}", show(value)));
        }
    }
    kept
}

/// Applies explicit policy `changes` to `item`; returns the changes that differ from what it
/// had, as `name: old -> new`.
pub fn apply_policy(item: &mut Item, changes: &Item) -> Vec<String> {
    let mut changed = Vec::new();
    for (name, value) in changes {
        let old = item.insert(name.clone(), value.clone());
        if old.as_ref() != Some(value) {
            let old = old.as_ref().map_or("(default)".to_owned(), show);
            changed.push(format!("{name}: {old} -> {}", show(value)));
        }
    }
    changed
}

/// One line listing an item's policy (`allow_self_assign=true disable_auto_update=minor`), or
/// `defaults`.
pub fn describe_policy(item: &Item) -> String {
    let parts: Vec<String> = policy_of(item)
        .into_iter()
        .map(|(n, v)| format!("{n}={}", show(v)))
        .collect();
    if parts.is_empty() {
        "defaults".to_owned()
    } else {
        parts.join(" ")
    }
}

/// An attribute value as an operator writes it on the command line.
pub fn show(v: &AttrValue) -> String {
    match v {
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::S(s) => s.clone(),
        AttrValue::N(n) => n.to_string(),
        AttrValue::Unsupported(t) => format!("<{t}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttrValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_release_keeps_policy_but_not_release_metadata() {
        let previous = item(&[
            ("version", AttrValue::S("1.0.1".into())),
            ("allow_self_assign", AttrValue::Bool(true)),
            ("disable_auto_update", AttrValue::S("minor".into())),
            ("comment", AttrValue::S("old notes".into())),
            ("paused", AttrValue::Bool(true)),
            (
                "auto_pause_threshold",
                AttrValue::N(serde_json::Number::from(5)),
            ),
        ]);
        let mut next = item(&[
            ("version", AttrValue::S("1.0.2".into())),
            ("disable_auto_update", AttrValue::S("patch".into())),
        ]);
        let kept = keep_policy(Some(&previous), &mut next);
        assert_eq!(kept, ["allow_self_assign=true", "auto_pause_threshold=5"]);
        assert_eq!(
            next.get("disable_auto_update"),
            Some(&AttrValue::S("patch".into()))
        );
        assert_eq!(next.get("allow_self_assign"), Some(&AttrValue::Bool(true)));
        assert!(!next.contains_key("comment") && !next.contains_key("paused"));
        assert!(keep_policy(None, &mut next).is_empty());
    }

    #[test]
    fn apply_reports_only_real_changes() {
        let mut it = item(&[("allow_dev", AttrValue::Bool(false))]);
        let changes = item(&[
            ("allow_dev", AttrValue::Bool(false)),
            ("allow_self_assign", AttrValue::Bool(true)),
        ]);
        assert_eq!(
            apply_policy(&mut it, &changes),
            ["allow_self_assign: (default) -> true"]
        );
        assert_eq!(
            describe_policy(&it),
            "allow_dev=false allow_self_assign=true"
        );
        assert_eq!(describe_policy(&Item::new()), "defaults");
    }
}
