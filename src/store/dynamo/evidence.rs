//! The evidence of design.md's auto-pause and rollout gate in the devices table: per mark a
//! device marker (`d#…`, conditional Put: each device counts once), a network count (`n#…`,
//! conditional increment up to the cap) and the release's tally (`t#…`), spread over
//! partitions by what they name; and per hour and release version an hourly count (`h#…`),
//! which the dashboard draws.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use super::devices::{DEVICE_KEY, TTL_ATTRIBUTE};
use super::stats::COUNTER_SHARDS;
use super::stats::DynamoStats;
use super::{PARTITION_KEY, n_of, s, s_of, unavailable};
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceKind, EvidenceMark};
use crate::domain::hourly::{
    HOURLY_KEEP_SECS, HOURLY_SK_PREFIX, HourlyCount, HourlyIncrements, hour_expires_at, hour_of,
    hourly_sort_key,
};
use crate::store::{EvidenceStore, StoreError};

/// The devices-table partition of an app's evidence items: `<app_id>#evidence` for the
/// release tallies, `<app_id>#evidence#<0-15>` for device and network markers, spread by
/// what they name so a release-day burst is not one partition's writes. App ids cannot
/// contain `#`, so these never meet an app's devices.
pub fn evidence_partition(app_id: &str, spread_by: Option<&str>) -> String {
    match spread_by {
        None => format!("{app_id}#evidence"),
        Some(s) => format!(
            "{app_id}#evidence#{}",
            Sha256::digest(s.as_bytes())[0] % COUNTER_SHARDS
        ),
    }
}

impl DynamoStats {
    /// Adds to one hour's item (`<app_id>#evidence`, `h#<hour>#<release>#<version>`, beside
    /// the release tallies), which expires `HOURLY_KEEP_SECS` after the hour: 1 write unit.
    async fn add_hourly(
        &self,
        app_id: &str,
        sk: &str,
        version: &str,
        hour: u64,
        attempts: u64,
        failures: u64,
    ) -> Result<(), StoreError> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        self.client
            .update_item()
            .table_name(&self.devices_table)
            .key(
                PARTITION_KEY,
                AttributeValue::S(evidence_partition(app_id, None)),
            )
            .key(
                DEVICE_KEY,
                AttributeValue::S(hourly_sort_key(hour, sk, version)),
            )
            .update_expression("ADD #a :a, #f :f SET #r = :r, #v = :v, #h = :h, #exp = :exp")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_names("#f", "failures")
            .expression_attribute_names("#r", "release")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#h", "hour")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":a", n(attempts))
            .expression_attribute_values(":f", n(failures))
            .expression_attribute_values(":r", AttributeValue::S(sk.to_owned()))
            .expression_attribute_values(":v", AttributeValue::S(version.to_owned()))
            .expression_attribute_values(":h", n(hour))
            .expression_attribute_values(":exp", n(hour_expires_at(hour)))
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        Ok(())
    }

    /// Counts one mark (module docs of `domain::evidence`): a conditional PutItem of the
    /// device's marker, a conditional increment of its network's count, an increment of the
    /// release's tally. `None` when the mark counted for nothing.
    async fn record_mark(
        &self,
        m: &EvidenceMark,
        expires_at: u64,
    ) -> Result<Option<Evidence>, StoreError> {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        use aws_sdk_dynamodb::types::ReturnValue;
        let (id, kind) = (m.key.id(), m.kind.as_str());
        let exp = AttributeValue::N(expires_at.to_string());
        let put = self
            .client
            .put_item()
            .table_name(&self.devices_table)
            .item(
                PARTITION_KEY,
                AttributeValue::S(evidence_partition(&m.key.app_id, Some(&m.device_id))),
            )
            .item(
                DEVICE_KEY,
                AttributeValue::S(format!("d#{kind}#{id}#{}", m.device_id)),
            )
            .item(TTL_ATTRIBUTE, exp.clone())
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", DEVICE_KEY)
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(unavailable("PutItem", e)),
        }
        let network = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key(
                PARTITION_KEY,
                AttributeValue::S(evidence_partition(&m.key.app_id, Some(&m.network))),
            )
            .key(
                DEVICE_KEY,
                AttributeValue::S(format!("n#{kind}#{id}#{}", m.network)),
            )
            .update_expression("ADD #n :one SET #exp = :exp")
            .condition_expression("attribute_not_exists(#n) OR #n < :cap")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":cap", AttributeValue::N(m.network_cap.to_string()))
            .expression_attribute_values(":exp", exp.clone())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let after = match network {
            Ok(out) => out
                .attributes()
                .and_then(|a| a.get("n"))
                .and_then(|n| n.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(1),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(unavailable("UpdateItem", e)),
        };
        let (attempts, failures, networks) = match m.kind {
            EvidenceKind::Attempt => (1, 0, 0),
            EvidenceKind::Failure => (0, 1, u64::from(after == 1)),
        };
        let n = |v: u64| AttributeValue::N(v.to_string());
        let tally = self
            .client
            .update_item()
            .table_name(&self.devices_table)
            .key(
                PARTITION_KEY,
                AttributeValue::S(evidence_partition(&m.key.app_id, None)),
            )
            .key(DEVICE_KEY, AttributeValue::S(format!("t#{id}")))
            .update_expression("ADD #a :a, #f :f, #nw :nw SET #exp = :exp")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_names("#f", "failures")
            .expression_attribute_names("#nw", "failing_networks")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":a", n(attempts))
            .expression_attribute_values(":f", n(failures))
            .expression_attribute_values(":nw", n(networks))
            .expression_attribute_values(":exp", exp)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        let get = |name: &str| {
            tally
                .attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Some(Evidence {
            attempts: get("attempts"),
            failures: get("failures"),
            failing_networks: get("failing_networks"),
        }))
    }
}

#[async_trait]
impl EvidenceStore for DynamoStats {
    /// Marks one after the other (at most `MAX_MARKS_PER_BATCH`, in order: an attempt before
    /// its failure), each at most three single-item writes of under 1 KB: 1 write unit each;
    /// then one `UpdateItem` per (release, version) counted, adding to this hour's item.
    async fn record_evidence(
        &self,
        marks: &[EvidenceMark],
        now: u64,
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError> {
        let expires_at = now.saturating_add(self.device_ttl_secs);
        let mut out: BTreeMap<EvidenceKey, Evidence> = BTreeMap::new();
        let mut hourly = HourlyIncrements::default();
        for m in marks {
            let Some(e) = self.record_mark(m, expires_at).await? else {
                continue;
            };
            hourly.add(&m.key.sk, &m.key.version, hour_of(now), m.kind);
            if m.kind == EvidenceKind::Failure {
                out.insert(m.key.clone(), e);
            }
        }
        if let Some(app_id) = marks.first().map(|m| m.key.app_id.as_str()) {
            for ((sk, version, hour), (attempts, failures)) in &hourly.by_bucket {
                self.add_hourly(app_id, sk, version, *hour, *attempts, *failures)
                    .await?;
            }
        }
        Ok(out.into_iter().collect())
    }

    /// One strongly consistent GetItem of the release's tally.
    async fn evidence(&self, key: &EvidenceKey) -> Result<Evidence, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.devices_table)
            .key(
                PARTITION_KEY,
                AttributeValue::S(evidence_partition(&key.app_id, None)),
            )
            .key(DEVICE_KEY, AttributeValue::S(format!("t#{}", key.id())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        let get = |name: &str| {
            out.item()
                .and_then(|a| a.get(name))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Evidence {
            attempts: get("attempts"),
            failures: get("failures"),
            failing_networks: get("failing_networks"),
        })
    }

    /// One Query (paged) of the app's hourly items from `since_hour` on: the hour leads the
    /// sort key, so the window is one key range. Items DynamoDB's TTL has not removed yet
    /// are skipped by their hour.
    async fn hourly(&self, app_id: &str, since_hour: u64) -> Result<Vec<HourlyCount>, StoreError> {
        let oldest = hour_of(self.clock.now().saturating_sub(HOURLY_KEEP_SECS));
        let from = format!("{HOURLY_SK_PREFIX}{:010}", since_hour.max(oldest));
        let items = self
            .client
            .query()
            .table_name(&self.devices_table)
            .key_condition_expression("#pk = :p AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#sk", DEVICE_KEY)
            .expression_attribute_values(":p", s(evidence_partition(app_id, None)))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(format!("{HOURLY_SK_PREFIX}~")))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| unavailable("Query", e))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let (Some(sk), Some(version), Some(hour)) = (
                s_of(&item, "release"),
                s_of(&item, "version"),
                n_of(&item, "hour"),
            ) else {
                tracing::warn!(
                    app_id,
                    "hourly item without release, version or hour; skipped"
                );
                continue;
            };
            out.push(HourlyCount {
                sk: sk.to_owned(),
                version: version.to_owned(),
                hour,
                attempts: n_of(&item, "attempts").unwrap_or(0),
                failures: n_of(&item, "failures").unwrap_or(0),
            });
        }
        Ok(out)
    }
}
