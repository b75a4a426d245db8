//! The devices table (`UPDRAFT_DEVICES_TABLE`, keys `app_id` + `device_id`): channel overrides
//! and failed versions. Items expire through the table's TTL on `expires_at`, refreshed by
//! every write, so devices that stopped checking in cost nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{PARTITION_KEY, SORT_KEY, conditional_write, n, s, unavailable};
use crate::clock::Clock;
use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::item::attr;
use crate::domain::keys::DEVICE_OVERRIDES_SK;
use crate::store::{DeviceStore, StoreError};

/// Sort key of the devices table: the device's lowercase UUID.
pub const DEVICE_KEY: &str = "device_id";
/// The devices table's TTL attribute (unix seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Attribute names, in one place because the stats writer shares them.
pub(crate) const CHANNEL: &str = "channel";
pub(crate) const CHANNEL_SOURCE: &str = "channel_source";
pub(crate) const FAILED_VERSIONS: &str = "failed_versions";
pub(crate) const LAST_SEEN: &str = "last_seen";

/// A device's failed versions, read consistently (empty for a device without an item): the
/// stats writer keeps them to the newest `MAX_FAILED_VERSIONS`.
pub(crate) async fn read_failed_versions(
    client: &Client,
    table: &str,
    app_id: &str,
    device_id: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(PARTITION_KEY, s(app_id))
        .key(DEVICE_KEY, s(device_id))
        .projection_expression("#fv")
        .expression_attribute_names("#fv", FAILED_VERSIONS)
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| unavailable("GetItem", e))?;
    Ok(match out.item().and_then(|i| i.get(FAILED_VERSIONS)) {
        Some(AttributeValue::Ss(vs)) => vs.iter().cloned().collect(),
        _ => BTreeSet::new(),
    })
}

/// Removes `versions` from a device's failed versions (by value: concurrent additions stay).
pub(crate) async fn delete_failed_versions(
    client: &Client,
    table: &str,
    app_id: &str,
    device_id: &str,
    versions: Vec<String>,
) -> Result<(), StoreError> {
    client
        .update_item()
        .table_name(table)
        .key(PARTITION_KEY, s(app_id))
        .key(DEVICE_KEY, s(device_id))
        .update_expression("DELETE #fv :old")
        .expression_attribute_names("#fv", FAILED_VERSIONS)
        .expression_attribute_values(":old", AttributeValue::Ss(versions))
        .send()
        .await
        .map_err(|e| unavailable("UpdateItem", e))?;
    Ok(())
}

/// Device items in one DynamoDB table; the releases table holds each app's
/// `device_overrides` marker.
#[derive(Clone)]
pub struct DynamoDevices {
    client: Client,
    releases_table: String,
    table: String,
    ttl_secs: u64,
    clock: Arc<dyn Clock>,
}

impl DynamoDevices {
    /// `ttl_secs`: how long an item lives after its last write (see `DEFAULT_DEVICE_TTL_SECS`).
    pub fn new(
        client: Client,
        releases_table: impl Into<String>,
        table: impl Into<String>,
        ttl_secs: u64,
    ) -> Self {
        DynamoDevices {
            client,
            releases_table: releases_table.into(),
            table: table.into(),
            ttl_secs,
            clock: crate::clock::system(),
        }
    }

    /// The same table, with `clock` for expiries and the overrides marker.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Writes the app's `device_overrides` marker (kept from the first override on). Written
    /// before the override itself, so an override never exists without it: an update check
    /// that finds no marker in the app's items may skip the device read. Not a transaction
    /// with the override, because every override of an app writes this one item: concurrent
    /// transactions on it would cancel each other, plain updates do not.
    async fn mark_overrides(&self, app_id: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.releases_table)
            .key(PARTITION_KEY, s(app_id))
            .key(SORT_KEY, s(DEVICE_OVERRIDES_SK))
            .update_expression("SET #since = if_not_exists(#since, :now)")
            .expression_attribute_names("#since", attr::SINCE)
            .expression_attribute_values(":now", n(self.clock.now()))
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        Ok(())
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn expires_at(&self) -> AttributeValue {
        n(self.clock.now().saturating_add(self.ttl_secs))
    }
}

/// Reads a device item. A hand-edited attribute of the wrong type reads as absent (and is
/// logged): a bad override must not keep a device from updating.
pub fn device_from_dynamo(
    app_id: &str,
    device_id: &str,
    raw: &HashMap<String, AttributeValue>,
) -> DeviceState {
    let garbled = |name: &str| {
        tracing::warn!(
            app_id,
            device_id,
            attribute = name,
            "device item attribute has an unexpected type or value; ignored"
        );
    };
    let mut state = DeviceState::default();
    match raw.get(CHANNEL) {
        None => {}
        Some(AttributeValue::S(c)) if !c.is_empty() => state.channel = Some(c.clone()),
        Some(_) => garbled(CHANNEL),
    }
    match raw.get(CHANNEL_SOURCE) {
        None => {}
        Some(AttributeValue::S(s)) => match ChannelSource::parse(s) {
            Some(src) => state.channel_source = Some(src),
            None => garbled(CHANNEL_SOURCE),
        },
        Some(_) => garbled(CHANNEL_SOURCE),
    }
    match raw.get(FAILED_VERSIONS) {
        None => {}
        Some(AttributeValue::Ss(vs)) => {
            state.failed_versions = vs.iter().cloned().collect::<BTreeSet<_>>();
        }
        Some(_) => garbled(FAILED_VERSIONS),
    }
    match raw.get(LAST_SEEN) {
        None => {}
        Some(AttributeValue::N(n)) => match n.parse::<u64>() {
            Ok(n) => state.last_seen = Some(n),
            Err(_) => garbled(LAST_SEEN),
        },
        Some(_) => garbled(LAST_SEEN),
    }
    state
}

fn key(app_id: &str, device_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            PARTITION_KEY.to_owned(),
            AttributeValue::S(app_id.to_owned()),
        ),
        (
            DEVICE_KEY.to_owned(),
            AttributeValue::S(device_id.to_owned()),
        ),
    ])
}

#[async_trait]
impl DeviceStore for DynamoDevices {
    async fn get_device(
        &self,
        app_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(app_id, device_id)))
            // On the update-check path: half the cost, and an override a second late is fine.
            .consistent_read(false)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .map(|raw| device_from_dynamo(app_id, device_id, raw)))
    }

    async fn set_channel(
        &self,
        app_id: &str,
        device_id: &str,
        channel: &str,
        source: ChannelSource,
    ) -> Result<(), StoreError> {
        self.mark_overrides(app_id).await?;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(app_id, device_id)))
            .update_expression("SET #c = :c, #s = :s, #exp = :exp")
            .expression_attribute_names("#c", CHANNEL)
            .expression_attribute_names("#s", CHANNEL_SOURCE)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":c", AttributeValue::S(channel.to_owned()))
            .expression_attribute_values(":s", AttributeValue::S(source.as_str().to_owned()))
            .expression_attribute_values(":exp", self.expires_at());
        if source == ChannelSource::Device {
            // A device's own choice never replaces an operator's assignment.
            request = request.condition_expression("attribute_not_exists(#s) OR #s = :s");
        }
        conditional_write(request.send().await, "UpdateItem").map(|_| ())
    }

    async fn unset_channel(
        &self,
        app_id: &str,
        device_id: &str,
        only: Option<ChannelSource>,
    ) -> Result<(), StoreError> {
        // `attribute_exists` keeps UpdateItem from creating a bare item (one without
        // `expires_at`, which would never expire) for a device never written.
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(app_id, device_id)))
            .update_expression("REMOVE #c, #s")
            .expression_attribute_names("#c", CHANNEL)
            .expression_attribute_names("#s", CHANNEL_SOURCE)
            .expression_attribute_names("#dk", DEVICE_KEY);
        request = match only {
            None => request.condition_expression("attribute_exists(#dk)"),
            Some(src) => request
                .condition_expression("attribute_exists(#dk) AND #s = :src")
                .expression_attribute_values(":src", AttributeValue::S(src.as_str().to_owned())),
        };
        // A failed condition (no override from that source) leaves nothing to do.
        conditional_write(request.send().await, "UpdateItem").map(|_| ())
    }

    async fn mark_existing_overrides(&self) -> Result<Vec<String>, StoreError> {
        let with_override = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#pk")
            .filter_expression("attribute_exists(#c)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#c", CHANNEL)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| unavailable("Scan", e))?;
        let apps: BTreeSet<String> = with_override
            .iter()
            .filter_map(|item| Some(item.get(PARTITION_KEY)?.as_s().ok()?.clone()))
            .collect();
        for app in &apps {
            self.mark_overrides(app).await?;
        }
        Ok(apps.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    #[test]
    fn reads_a_full_item() {
        let raw = HashMap::from([
            (CHANNEL.to_owned(), s("beta")),
            (CHANNEL_SOURCE.to_owned(), s("operator")),
            (
                FAILED_VERSIONS.to_owned(),
                AttributeValue::Ss(vec!["1.0.1".into(), "1.0.0".into()]),
            ),
            (LAST_SEEN.to_owned(), AttributeValue::N("1700000000".into())),
        ]);
        let d = device_from_dynamo("a", "d", &raw);
        assert_eq!(d.channel.as_deref(), Some("beta"));
        assert_eq!(d.channel_source, Some(ChannelSource::Operator));
        assert_eq!(
            d.failed_versions.iter().collect::<Vec<_>>(),
            ["1.0.0", "1.0.1"]
        );
        assert_eq!(d.last_seen, Some(1_700_000_000));
    }

    #[test]
    fn garbled_attributes_read_as_absent() {
        let raw = HashMap::from([
            (CHANNEL.to_owned(), AttributeValue::N("3".into())),
            (CHANNEL_SOURCE.to_owned(), s("robot")),
            (FAILED_VERSIONS.to_owned(), s("1.0.0")),
            (LAST_SEEN.to_owned(), AttributeValue::N("-1".into())),
        ]);
        assert_eq!(device_from_dynamo("a", "d", &raw), DeviceState::default());
        assert_eq!(
            device_from_dynamo("a", "d", &HashMap::new()),
            DeviceState::default()
        );
    }
}
