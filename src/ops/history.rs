//! History as operators read it: the entries of an app (or one channel), newest first.

use serde::Serialize;

use crate::domain::history::{HistoryAction, HistoryEntry, history_partition, rfc3339};
use crate::domain::keys::Target;
use crate::ops::OperatorStores;
use crate::ops::apps::{require_app, require_channel};

/// History entries, newest first, optionally of one channel, at most `limit`.
pub async fn history_entries(
    stores: &OperatorStores,
    app_id: &str,
    channel: Option<&str>,
    limit: Option<usize>,
) -> anyhow::Result<Vec<HistoryEntry>> {
    // With a channel filter the limit applies after filtering.
    let query_limit = if channel.is_some() { None } else { limit };
    let items = stores
        .query
        .query_prefix(&history_partition(app_id), "", true, query_limit)
        .await?;
    Ok(items
        .iter()
        .filter_map(|(_, i)| HistoryEntry::from_item(i))
        .filter(|e| channel.is_none_or(|c| e.channel == c))
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

/// One row of `updraft history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_micros: u64,
    pub action: HistoryAction,
    pub channel: String,
    pub platform: Target,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub who: String,
    pub detail: Option<String>,
}

impl From<HistoryEntry> for HistoryRow {
    fn from(e: HistoryEntry) -> Self {
        HistoryRow {
            at: rfc3339(e.at_micros),
            at_micros: e.at_micros,
            action: e.action,
            channel: e.channel,
            platform: e.platform,
            from_version: e.from_version,
            to_version: e.to_version,
            who: e.who,
            detail: e.detail,
        }
    }
}

/// `updraft history`, newest first.
pub async fn history(
    stores: &OperatorStores,
    app_id: &str,
    channel: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<HistoryRow>> {
    let snap = require_app(stores, app_id).await?;
    if let Some(c) = channel {
        require_channel(&snap, app_id, c)?;
    }
    let entries = history_entries(stores, app_id, channel, Some(limit)).await?;
    Ok(entries.into_iter().map(HistoryRow::from).collect())
}
