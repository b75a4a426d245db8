//! Items as DynamoDB and the embedded store hold them: the attribute values, every attribute
//! name of the item contract (README's item tables) as a constant, and one typed reader and
//! writer (`ItemExt`), so no module spells an attribute or matches a value type by hand.

use std::collections::BTreeMap;

/// One attribute value, in the subset of DynamoDB types the items use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    S(String),
    /// A DynamoDB number, kept as its decimal text.
    N(serde_json::Number),
    /// A DynamoDB type no item attribute uses (`L`, `M`, `SS`, `NULL`, …), by its type code.
    /// Kept rather than dropped, so reading such an attribute fails with `WrongType` naming it
    /// instead of silently taking the default. Never stored in the embedded store.
    #[serde(skip)]
    Unsupported(String),
}

/// An item's attributes, without its keys (`app_id`, `sk`).
pub type Item = BTreeMap<String, AttrValue>;

/// The attribute names of the item contract (README: "Release items (the contract)").
pub mod attr {
    // What a release item serves.
    pub const VERSION: &str = "version";
    pub const BUNDLE: &str = "bundle";
    pub const URL: &str = "url";
    pub const MANIFEST: &str = "manifest";
    pub const CHECKSUM: &str = "checksum";
    pub const SESSION_KEY: &str = "session_key";
    pub const KEY_ID: &str = "key_id";
    pub const LINK: &str = "link";
    pub const COMMENT: &str = "comment";
    // Channel policy.
    pub const DISABLE_AUTO_UPDATE: &str = "disable_auto_update";
    pub const DISABLE_AUTO_UPDATE_UNDER_NATIVE: &str = "disable_auto_update_under_native";
    pub const MIN_UPDATE_VERSION: &str = "min_update_version";
    pub const ALLOW_EMULATOR: &str = "allow_emulator";
    pub const ALLOW_DEVICE: &str = "allow_device";
    pub const ALLOW_DEV: &str = "allow_dev";
    pub const ALLOW_PROD: &str = "allow_prod";
    pub const ALLOW_SELF_ASSIGN: &str = "allow_self_assign";
    pub const AUTO_PAUSE: &str = "auto_pause";
    pub const AUTO_PAUSE_MIN_ATTEMPTS: &str = "auto_pause_min_attempts";
    pub const AUTO_PAUSE_MIN_NETWORKS: &str = "auto_pause_min_networks";
    pub const AUTO_PAUSE_DEVICES_PER_NETWORK: &str = "auto_pause_devices_per_network";
    pub const AUTO_PAUSE_THRESHOLD: &str = "auto_pause_threshold";
    pub const AUTO_PAUSE_COOLDOWN: &str = "auto_pause_cooldown";
    // The stable version's life.
    pub const PAUSED: &str = "paused";
    pub const PAUSE_REASON: &str = "pause_reason";
    pub const PAUSED_AT: &str = "paused_at";
    pub const RESUMED_AT: &str = "resumed_at";
    pub const PAUSE_BASELINE_INSTALLS: &str = "pause_baseline_installs";
    pub const PAUSE_BASELINE_FAILURES: &str = "pause_baseline_failures";
    pub const RELEASED_AT: &str = "released_at";
    /// Counts the changes of a release or `app` item; every change is conditioned on it.
    pub const REVISION: &str = "revision";
    // The `app` item.
    pub const DEFAULT_CHANNEL: &str = "default_channel";
    pub const LEGACY_CHANNEL_SELF: &str = "legacy_channel_self";
    pub const DELTA: &str = "delta";
    // A `bundle#<version>` item (with BUNDLE, CHECKSUM, MANIFEST, SESSION_KEY, KEY_ID).
    pub const SHA256: &str = "sha256";
    pub const SIZE: &str = "size";
    pub const CREATED_AT: &str = "created_at";
    pub const FILES: &str = "files";
    // The `device_overrides` marker.
    pub const SINCE: &str = "since";
}

/// An item that cannot be used as written. The message names the attribute, so an operator
/// can fix the item; devices only see that the release is misconfigured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("attribute {0} is required")]
    Missing(&'static str),
    #[error("attribute {name} must be {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
    },
    #[error("attribute {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

impl ItemError {
    pub fn invalid(name: &'static str, why: impl Into<String>) -> Self {
        ItemError::Invalid {
            name,
            why: why.into(),
        }
    }

    fn wrong_type(name: &str, expected: &'static str) -> Self {
        ItemError::WrongType {
            name: name.into(),
            expected,
        }
    }
}

/// Typed reads and writes of an item's attributes. The `get_*` readers are strict (a value
/// of the wrong type is an `ItemError` naming it: what the update check's items need); the
/// short readers (`text`, `flag`, …) take a wrong type as absent (listings, history).
pub trait ItemExt {
    /// A string attribute; `Err` for another type.
    fn get_text(&self, name: &'static str) -> Result<Option<&str>, ItemError>;
    /// A boolean attribute, or `default` when absent; `Err` for another type.
    fn get_flag(&self, name: &'static str, default: bool) -> Result<bool, ItemError>;
    /// A non-negative whole number; `Err` for another type or a negative one.
    fn get_whole(&self, name: &'static str) -> Result<Option<u64>, ItemError>;
    /// A number; `Err` for another type.
    fn get_number(&self, name: &'static str) -> Result<Option<f64>, ItemError>;

    fn text(&self, name: &str) -> Option<&str>;
    fn flag(&self, name: &str) -> Option<bool>;
    fn whole(&self, name: &str) -> Option<u64>;
    fn number(&self, name: &str) -> Option<f64>;

    fn set_text(&mut self, name: &str, value: &str);
    fn set_flag(&mut self, name: &str, value: bool);
    fn set_whole(&mut self, name: &str, value: u64);
    /// Sets a number; a value JSON cannot hold (NaN, infinity) is not written.
    fn set_number(&mut self, name: &str, value: f64);
}

impl ItemExt for Item {
    fn get_text(&self, name: &'static str) -> Result<Option<&str>, ItemError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::S(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ItemError::wrong_type(name, "a string (S)")),
        }
    }

    fn get_flag(&self, name: &'static str, default: bool) -> Result<bool, ItemError> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Bool(b)) => Ok(*b),
            Some(_) => Err(ItemError::wrong_type(name, "a boolean (BOOL)")),
        }
    }

    fn get_whole(&self, name: &'static str) -> Result<Option<u64>, ItemError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::N(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| ItemError::invalid(name, "must be a non-negative number")),
            Some(_) => Err(ItemError::wrong_type(name, "a number (N)")),
        }
    }

    fn get_number(&self, name: &'static str) -> Result<Option<f64>, ItemError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::N(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| ItemError::invalid(name, "must be a number")),
            Some(_) => Err(ItemError::wrong_type(name, "a number (N)")),
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(AttrValue::S(s)) => Some(s),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(AttrValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn whole(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(AttrValue::N(n)) => n.as_u64(),
            _ => None,
        }
    }

    fn number(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(AttrValue::N(n)) => n.as_f64(),
            _ => None,
        }
    }

    fn set_text(&mut self, name: &str, value: &str) {
        self.insert(name.to_owned(), AttrValue::S(value.to_owned()));
    }

    fn set_flag(&mut self, name: &str, value: bool) {
        self.insert(name.to_owned(), AttrValue::Bool(value));
    }

    fn set_whole(&mut self, name: &str, value: u64) {
        self.insert(name.to_owned(), AttrValue::N(value.into()));
    }

    fn set_number(&mut self, name: &str, value: f64) {
        if let Some(n) = serde_json::Number::from_f64(value) {
            self.insert(name.to_owned(), AttrValue::N(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_readers_name_the_attribute_and_short_ones_skip_wrong_types() {
        let mut item = Item::new();
        item.set_text(attr::VERSION, "1.0.0");
        item.set_flag(attr::PAUSED, true);
        item.set_whole(attr::RESUMED_AT, 7);
        item.set_number(attr::AUTO_PAUSE_THRESHOLD, 0.25);
        item.set_number("nan", f64::NAN);
        assert!(!item.contains_key("nan"));
        assert_eq!(item.get_text(attr::VERSION), Ok(Some("1.0.0")));
        assert_eq!(item.get_flag(attr::ALLOW_DEV, true), Ok(true));
        assert_eq!(item.get_whole(attr::RESUMED_AT), Ok(Some(7)));
        assert_eq!(item.get_number(attr::AUTO_PAUSE_THRESHOLD), Ok(Some(0.25)));
        let wrong = item.get_text(attr::PAUSED).unwrap_err().to_string();
        assert!(
            wrong.contains("paused") && wrong.contains("string"),
            "{wrong}"
        );
        assert!(item.get_flag(attr::VERSION, false).is_err());
        assert_eq!(item.text(attr::PAUSED), None);
        assert_eq!(item.flag(attr::PAUSED), Some(true));
        assert_eq!(item.whole(attr::VERSION), None);
    }
}
