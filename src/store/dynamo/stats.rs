//! Per-release action counters in the releases table, and the devices' failed versions, one
//! transaction per stats request.
//!
//! Counters are sharded: a release-day burst for one app would otherwise pile onto one
//! partition, which takes about 1,000 writes per second. Each counter lives in
//! `COUNTER_SHARDS` partitions `<app_id>#counters#<shard>` (app ids cannot contain `#`, so these
//! never meet an app's own partition), sort key `counter#<channel>#<version>`, with one number
//! attribute `n_<action>` per action. A batch writes to one shard, chosen from its id, so a
//! resent batch is the same request; readers add the shards up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};
use sha2::{Digest, Sha256};

use super::devices::{DEVICE_KEY, TTL_ATTRIBUTE};
use super::devices::{FAILED_VERSIONS, LAST_SEEN, delete_failed_versions, read_failed_versions};
use super::{PARTITION_KEY, SORT_KEY, s, unavailable};
use crate::clock::Clock;
use crate::domain::stats::fold::{ActionCounts, CounterKey, StatsBatch, newest_failed_versions};
use crate::store::{StatsSink, StoreError};

/// Partitions each counter is spread over.
pub const COUNTER_SHARDS: u8 = 16;
/// Most items DynamoDB accepts in one TransactWriteItems.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// Prefix of a counter's action attributes: `n_set`, `n_update_fail`, …
pub const ACTION_PREFIX: &str = "n_";
/// Prefix of counter sort keys.
pub const COUNTER_SK_PREFIX: &str = "counter#";

/// Most actions one counter Update adds. DynamoDB's limit is the 4 KB expression (about 300
/// of `#a12 :n12, `); moto's parser recurses per clause and fails near 200. 64 covers every
/// action the plugin sends, and 16 shards × 64 covers a full batch of `MAX_EVENTS` distinct
/// ones.
pub const ACTIONS_PER_UPDATE: usize = 64;
/// Attempts of one transaction when it only lost a race with a concurrent one on the same
/// counter: such a transaction wrote nothing and can be sent again at once.
const CONFLICT_ATTEMPTS: u32 = 3;
/// Attempts of a BatchGetItem that leaves keys unprocessed (throttled partitions).
const BATCH_GET_ATTEMPTS: u32 = 4;

/// The partition of one counter shard.
pub fn counter_partition(app_id: &str, shard: u8) -> String {
    format!("{app_id}#counters#{shard}")
}

/// The sort key of a release's counter.
pub fn counter_sk(channel: &str, version: &str) -> String {
    format!("{COUNTER_SK_PREFIX}{channel}#{version}")
}

/// The shard a batch writes to: from its id, so a resend goes to the same items (and is the
/// same request for DynamoDB's idempotency token). Ids are hex digests; anything else is
/// hashed first.
pub fn shard_of(batch_id: &str) -> u8 {
    let first = match hex::decode(batch_id) {
        Ok(bytes) if !bytes.is_empty() => bytes[0],
        _ => Sha256::digest(batch_id.as_bytes())[0],
    };
    first % COUNTER_SHARDS
}

/// The `ClientRequestToken` of a batch's transaction (1 to 36 characters). `chunk` numbers the
/// transactions of a batch too big for one, which each need their own token.
fn request_token(batch_id: &str, chunk: Option<usize>) -> String {
    let plain = (1..=36).contains(&batch_id.len())
        && batch_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match chunk {
        None if plain => batch_id.to_owned(),
        None => hex::encode(&Sha256::digest(batch_id.as_bytes())[..16]),
        Some(i) => hex::encode(&Sha256::digest(format!("{batch_id}#{i}").as_bytes())[..16]),
    }
}

/// Adds a counter item's `n_*` attributes to `into`; others (keys, channel, version) are not
/// counts. A garbled count is skipped and logged rather than failing the whole read.
fn add_counts(into: &mut ActionCounts, item: &HashMap<String, AttributeValue>) {
    for (name, value) in item {
        let Some(action) = name.strip_prefix(ACTION_PREFIX) else {
            continue;
        };
        match value {
            AttributeValue::N(n) => match n.parse::<u64>() {
                Ok(n) => {
                    let total = into.entry(action.to_owned()).or_default();
                    *total = total.saturating_add(n);
                }
                Err(_) => tracing::warn!(attribute = %name, value = %n, "counter is not a count"),
            },
            _ => tracing::warn!(attribute = %name, "counter is not a number"),
        }
    }
}

/// True when a transaction was cancelled only because concurrent transactions held its items.
fn only_conflicts(e: &TransactWriteItemsError) -> bool {
    let TransactWriteItemsError::TransactionCanceledException(ex) = e else {
        return false;
    };
    let mut codes = ex
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .filter(|c| *c != "None")
        .peekable();
    codes.peek().is_some() && codes.all(|c| c == "TransactionConflict")
}

/// Device events in DynamoDB.
#[derive(Clone)]
pub struct DynamoStats {
    pub(super) client: Client,
    releases_table: String,
    pub(super) devices_table: String,
    pub(super) device_ttl_secs: u64,
    pub(super) clock: Arc<dyn Clock>,
}

impl DynamoStats {
    pub fn new(
        client: Client,
        releases_table: impl Into<String>,
        devices_table: impl Into<String>,
        device_ttl_secs: u64,
    ) -> Self {
        DynamoStats {
            client,
            releases_table: releases_table.into(),
            devices_table: devices_table.into(),
            device_ttl_secs,
            clock: crate::clock::system(),
        }
    }

    /// The same tables, with `clock` for `last_seen`, expiries and the hourly window.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn releases_table(&self) -> &str {
        &self.releases_table
    }

    pub fn devices_table(&self) -> &str {
        &self.devices_table
    }

    /// The failed versions the devices of a batch's failures already have (one consistent
    /// GetItem per such device: a plugin's batch has one).
    async fn failed_versions_of(
        &self,
        batch: &StatsBatch,
    ) -> Result<BTreeMap<(String, String), BTreeSet<String>>, StoreError> {
        let mut out = BTreeMap::new();
        let devices: BTreeSet<(&String, &String)> = batch
            .device_failures
            .iter()
            .map(|(a, d, _)| (a, d))
            .collect();
        for (app_id, device_id) in devices {
            let known =
                read_failed_versions(&self.client, &self.devices_table, app_id, device_id).await?;
            out.insert((app_id.clone(), device_id.clone()), known);
        }
        Ok(out)
    }

    /// Keeps each device's failed versions to the newest `MAX_FAILED_VERSIONS`: the batch
    /// added its versions atomically (ADD, so concurrent batches lose none); the ones now
    /// beyond the newest are deleted, by value, in one UpdateItem only when there are some.
    async fn trim_failed_versions(
        &self,
        batch: &StatsBatch,
        known: &BTreeMap<(String, String), BTreeSet<String>>,
    ) -> Result<(), StoreError> {
        let mut all = known.clone();
        for (app_id, device_id, version) in &batch.device_failures {
            all.entry((app_id.clone(), device_id.clone()))
                .or_default()
                .insert(version.clone());
        }
        for ((app_id, device_id), versions) in all {
            let kept = newest_failed_versions(versions.clone());
            let dropped: Vec<String> = versions.difference(&kept).cloned().collect();
            if dropped.is_empty() {
                continue;
            }
            delete_failed_versions(
                &self.client,
                &self.devices_table,
                &app_id,
                &device_id,
                dropped,
            )
            .await?;
        }
        Ok(())
    }

    fn counter_key(&self, app_id: &str, shard: u8, sk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                PARTITION_KEY.to_owned(),
                AttributeValue::S(counter_partition(app_id, shard)),
            ),
            (SORT_KEY.to_owned(), AttributeValue::S(sk)),
        ])
    }

    /// The writes of one batch: one Update per counter, one per device (a transaction may not
    /// touch an item twice, so each device's failures go into its one Update).
    fn transact_items(
        &self,
        batch: &StatsBatch,
        now: u64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |u: aws_sdk_dynamodb::types::builders::UpdateBuilder| {
            u.build()
                .map(|u| TransactWriteItem::builder().update(u).build())
                .map_err(|e| unavailable("TransactWriteItems", e))
        };
        // Counter items of this batch, each once: a transaction may not name an item twice.
        // Distinct keys can meet on one item when a channel or version contains `#`; their
        // counts are then added together rather than failing the batch on every resend.
        let base = shard_of(&batch.id);
        let mut counters: BTreeMap<(String, u8, String), (&CounterKey, ActionCounts)> =
            BTreeMap::new();
        for (key, counts) in &batch.counts {
            let actions: Vec<(&String, &u64)> = counts.iter().filter(|(_, n)| **n > 0).collect();
            // An expression is at most 4 KB: a key with more actions than one Update can hold
            // (only a forged batch has hundreds) spreads them over further shards, which
            // readers add up anyway.
            for (j, group) in actions.chunks(ACTIONS_PER_UPDATE).enumerate() {
                if j >= usize::from(COUNTER_SHARDS) {
                    return Err(StoreError::Unavailable(format!(
                        "stats batch {}: release {}/{} has over {} distinct actions",
                        batch.id,
                        key.channel,
                        key.version,
                        ACTIONS_PER_UPDATE * usize::from(COUNTER_SHARDS)
                    )));
                }
                let shard = (base + j as u8) % COUNTER_SHARDS;
                let item = (
                    key.app_id.clone(),
                    shard,
                    counter_sk(&key.channel, &key.version),
                );
                let entry = counters.entry(item).or_insert((key, ActionCounts::new()));
                if entry.0 != key {
                    tracing::warn!(
                        batch = %batch.id,
                        first = ?entry.0,
                        other = ?key,
                        "counter keys share an item; counted together"
                    );
                }
                for (action, n) in group {
                    let total = entry.1.entry((*action).clone()).or_default();
                    *total = total.saturating_add(**n);
                }
            }
        }

        let mut items = Vec::with_capacity(counters.len() + batch.devices_seen.len());
        for ((app_id, shard, sk), (key, counts)) in counters {
            let mut update = Update::builder()
                .table_name(&self.releases_table)
                .set_key(Some(self.counter_key(&app_id, shard, sk)))
                .expression_attribute_names("#c", "channel")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":c", AttributeValue::S(key.channel.clone()))
                .expression_attribute_values(":v", AttributeValue::S(key.version.clone()));
            let mut adds = Vec::with_capacity(counts.len());
            for (i, (action, n)) in counts.into_iter().enumerate() {
                adds.push(format!("#a{i} :n{i}"));
                update = update
                    .expression_attribute_names(
                        format!("#a{i}"),
                        format!("{ACTION_PREFIX}{action}"),
                    )
                    .expression_attribute_values(
                        format!(":n{i}"),
                        AttributeValue::N(n.to_string()),
                    );
            }
            let expression = format!("SET #c = :c, #v = :v ADD {}", adds.join(", "));
            items.push(build(update.update_expression(expression))?);
        }

        let mut devices: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for (app_id, device_id) in &batch.devices_seen {
            devices.entry((app_id, device_id)).or_default();
        }
        for (app_id, device_id, version) in &batch.device_failures {
            devices
                .entry((app_id, device_id))
                .or_default()
                .insert(version);
        }
        let expires_at = now.saturating_add(self.device_ttl_secs);
        for ((app_id, device_id), failed) in devices {
            let mut update = Update::builder()
                .table_name(&self.devices_table)
                .key(PARTITION_KEY, AttributeValue::S(app_id.to_owned()))
                .key(DEVICE_KEY, AttributeValue::S(device_id.to_owned()))
                .expression_attribute_names("#ls", LAST_SEEN)
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .expression_attribute_values(":exp", AttributeValue::N(expires_at.to_string()));
            let expression = if failed.is_empty() {
                "SET #ls = :now, #exp = :exp"
            } else {
                update = update
                    .expression_attribute_names("#fv", FAILED_VERSIONS)
                    .expression_attribute_values(
                        ":vs",
                        AttributeValue::Ss(failed.into_iter().map(str::to_owned).collect()),
                    );
                "SET #ls = :now, #exp = :exp ADD #fv :vs"
            };
            items.push(build(update.update_expression(expression))?);
        }
        Ok(items)
    }
}

#[async_trait]
impl StatsSink for DynamoStats {
    /// One TransactWriteItems per batch, all or nothing, with the batch id as its
    /// `ClientRequestToken`: DynamoDB applies a resend within 10 minutes once. A batch of more
    /// than `MAX_TRANSACT_ITEMS` counters and devices (hundreds of distinct releases or
    /// devices; the plugin's batches are far smaller) is written as several transactions: only
    /// then can a failure leave part of it written. Each has its own stable token, so the
    /// plugin's resend still writes each part once within those 10 minutes.
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let known = self.failed_versions_of(batch).await?;
        let items = self.transact_items(batch, self.clock.now())?;
        let chunks: Vec<&[TransactWriteItem]> = items.chunks(MAX_TRANSACT_ITEMS).collect();
        let chunked = chunks.len() > 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let token = request_token(&batch.id, chunked.then_some(i));
            let mut attempt = 1;
            loop {
                let result = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(chunk.to_vec()))
                    .client_request_token(&token)
                    .send()
                    .await;
                let Err(e) = result else { break };
                let service = e.as_service_error();
                // The batch id is a digest of the request body, so the same token with other
                // parameters can only differ in the clock (`last_seen`): this batch was
                // applied by an earlier request whose answer the plugin never got.
                if service.is_some_and(|se| se.is_idempotent_parameter_mismatch_exception()) {
                    tracing::info!(batch = %batch.id, "stats batch already recorded");
                    break;
                }
                if attempt < CONFLICT_ATTEMPTS && service.is_some_and(only_conflicts) {
                    attempt += 1;
                    let pause = rand::random_range(10..40) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
                let err = unavailable("TransactWriteItems", e);
                return Err(match err {
                    StoreError::Unavailable(detail) if chunked => StoreError::Unavailable(format!(
                        "{detail} (transaction {} of {}; earlier ones were written)",
                        i + 1,
                        chunks.len()
                    )),
                    other => other,
                });
            }
        }
        self.trim_failed_versions(batch, &known).await
    }

    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError> {
        let keys = (0..COUNTER_SHARDS)
            .map(|shard| {
                self.counter_key(&key.app_id, shard, counter_sk(&key.channel, &key.version))
            })
            .collect();
        let wanted = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            // Auto-pause and `updraft stats` can be a second behind; half the read cost.
            .consistent_read(false)
            .build()
            .map_err(|e| unavailable("BatchGetItem", e))?;
        let mut request = HashMap::from([(self.releases_table.clone(), wanted)]);
        let mut total = ActionCounts::new();
        for attempt in 1..=BATCH_GET_ATTEMPTS {
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.releases_table))
                .into_iter()
                .flatten()
            {
                add_counts(&mut total, item);
            }
            match out.unprocessed_keys {
                Some(rest) if rest.values().any(|k| !k.keys().is_empty()) => request = rest,
                _ => return Ok(total),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB BatchGetItem: counter shards still unprocessed after {BATCH_GET_ATTEMPTS} \
             attempts (throttled)"
        )))
    }

    async fn app_counts(
        &self,
        app_id: &str,
    ) -> Result<Vec<(CounterKey, ActionCounts)>, StoreError> {
        // One Query per shard partition, all at once: the answer takes one round trip.
        let mut shards = tokio::task::JoinSet::new();
        for shard in 0..COUNTER_SHARDS {
            let (client, table) = (self.client.clone(), self.releases_table.clone());
            let partition = counter_partition(app_id, shard);
            shards.spawn(async move {
                client
                    .query()
                    .table_name(&table)
                    .key_condition_expression("#pk = :p AND begins_with(#sk, :c)")
                    .expression_attribute_names("#pk", PARTITION_KEY)
                    .expression_attribute_names("#sk", SORT_KEY)
                    .expression_attribute_values(":p", s(partition))
                    .expression_attribute_values(":c", s(COUNTER_SK_PREFIX))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| unavailable("Query", e))
            });
        }
        let mut totals: BTreeMap<CounterKey, ActionCounts> = BTreeMap::new();
        while let Some(joined) = shards.join_next().await {
            let items = joined
                .map_err(|e| StoreError::Unavailable(format!("counter query task: {e}")))??;
            for item in items {
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(s)) => Some(s.clone()),
                    _ => None,
                };
                let (Some(channel), Some(version)) = (text("channel"), text("version")) else {
                    tracing::warn!(
                        app_id,
                        sk = ?item.get(SORT_KEY),
                        "counter item without channel or version; skipped"
                    );
                    continue;
                };
                let key = CounterKey {
                    app_id: app_id.to_owned(),
                    channel,
                    version,
                };
                add_counts(totals.entry(key).or_default(), &item);
            }
        }
        Ok(totals.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_follow_the_batch_id() {
        assert_eq!(shard_of("1f00"), 0x1f % 16);
        assert_eq!(shard_of("ab"), 0xab % 16);
        assert_eq!(shard_of("not hex"), shard_of("not hex"));
        assert!(shard_of("") < COUNTER_SHARDS);
        assert_eq!(
            counter_partition("com.example.app", 3),
            "com.example.app#counters#3"
        );
        assert_eq!(counter_sk("beta", "1.0.1"), "counter#beta#1.0.1");
    }

    #[test]
    fn request_tokens_fit_dynamodb() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(request_token(id, None), id);
        let long = "x".repeat(100);
        for t in [
            request_token(&long, None),
            request_token("", None),
            request_token("a b", None),
            request_token(id, Some(0)),
            request_token(id, Some(19)),
        ] {
            assert!((1..=36).contains(&t.len()), "{t}");
        }
        assert_ne!(request_token(id, Some(0)), request_token(id, Some(1)));
        assert_eq!(request_token(id, Some(2)), request_token(id, Some(2)));
    }

    #[test]
    fn counts_skip_garbled_values() {
        let item = HashMap::from([
            ("n_set".to_owned(), AttributeValue::N("3".into())),
            ("n_update_fail".to_owned(), AttributeValue::S("x".into())),
            ("n_reset".to_owned(), AttributeValue::N("1.5".into())),
            ("channel".to_owned(), AttributeValue::S("beta".into())),
        ]);
        let mut total = ActionCounts::new();
        add_counts(&mut total, &item);
        add_counts(&mut total, &item);
        assert_eq!(total, ActionCounts::from([("set".to_owned(), 6)]));
    }

    #[test]
    fn conflicts_are_told_apart() {
        use aws_sdk_dynamodb::types::CancellationReason;
        use aws_sdk_dynamodb::types::error::TransactionCanceledException;
        let cancelled = |codes: &[&str]| {
            let mut ex = TransactionCanceledException::builder();
            for c in codes {
                ex = ex.cancellation_reasons(CancellationReason::builder().code(*c).build());
            }
            TransactWriteItemsError::TransactionCanceledException(ex.build())
        };
        assert!(only_conflicts(&cancelled(&["None", "TransactionConflict"])));
        assert!(!only_conflicts(&cancelled(&[
            "ConditionalCheckFailed",
            "TransactionConflict"
        ])));
        assert!(!only_conflicts(&cancelled(&["None"])));
        assert!(!only_conflicts(&cancelled(&[])));
    }
}
