//! Creating the two tables as design.md §3 keys them (on-demand billing; TTL on the devices
//! table), for tests and first runs; an existing table is accepted if its keys match.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use super::devices::{DEVICE_KEY, TTL_ATTRIBUTE};
use super::{PARTITION_KEY, SORT_KEY, unavailable};
use crate::store::StoreError;

/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// Creates the release table (on-demand billing, keys `app_id` + `sk`) and waits until it is
/// ACTIVE. An existing table is accepted if its keys match; returns whether it was created.
pub async fn create_table(client: &Client, name: &str) -> Result<bool, StoreError> {
    create_keyed_table(client, name, PARTITION_KEY, SORT_KEY).await
}

/// Creates an on-demand table keyed by two strings, `hash` + `range`, and waits until it is
/// ACTIVE. An existing table is accepted if its keys match; returns whether it was created.
async fn create_keyed_table(
    client: &Client,
    name: &str,
    hash: &str,
    range: &str,
) -> Result<bool, StoreError> {
    let key = |attr: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kind)
            .build()
            .map_err(|e| unavailable("CreateTable", e))
    };
    let def = |attr: &str| {
        AttributeDefinition::builder()
            .attribute_name(attr)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| unavailable("CreateTable", e))
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(hash)?)
        .attribute_definitions(def(range)?)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(e) => return Err(unavailable("CreateTable", e)),
    };

    let deadline = Instant::now() + TABLE_ACTIVE_WAIT;
    loop {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable", e))?
            .table
            .ok_or_else(|| StoreError::Unavailable(format!("DescribeTable {name}: no table")))?;
        if table.table_status == Some(TableStatus::Active) {
            check_key_schema(name, table.key_schema(), hash, range)?;
            return Ok(created);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {name} is still {:?} after {} s",
                table.table_status,
                TABLE_ACTIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Refuses a table whose keys differ from design.md §3: every read and write would fail.
fn check_key_schema(
    name: &str,
    schema: &[KeySchemaElement],
    hash: &str,
    range: &str,
) -> Result<(), StoreError> {
    let has = |attr: &str, kind: KeyType| {
        schema
            .iter()
            .any(|k| k.attribute_name() == attr && *k.key_type() == kind)
    };
    if schema.len() == 2 && has(hash, KeyType::Hash) && has(range, KeyType::Range) {
        Ok(())
    } else {
        let found: Vec<String> = schema
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(StoreError::Conflict(format!(
            "table {name} has keys [{}]; updraft needs {hash} (HASH) and {range} (RANGE), both strings",
            found.join(", ")
        )))
    }
}

/// Creates the devices table (on-demand billing, keys `app_id` + `device_id`), waits until it
/// is ACTIVE and turns on TTL on `expires_at`. An existing table is accepted if its keys match
/// and its TTL is on `expires_at` or off (then it is turned on); returns whether it was created.
pub async fn create_devices_table(client: &Client, name: &str) -> Result<bool, StoreError> {
    let created = create_keyed_table(client, name, PARTITION_KEY, DEVICE_KEY).await?;
    enable_ttl(client, name).await?;
    Ok(created)
}

/// Turns on TTL on `expires_at`, unless it already is: DynamoDB refuses to enable it twice,
/// and a TTL on another attribute would never expire our items.
async fn enable_ttl(client: &Client, name: &str) -> Result<(), StoreError> {
    let described = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| unavailable("DescribeTimeToLive", e))?;
    let (status, attribute) = described
        .time_to_live_description()
        .map(|d| (d.time_to_live_status().cloned(), d.attribute_name()))
        .unwrap_or((None, None));
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            return if attribute == Some(TTL_ATTRIBUTE) {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!(
                    "table {name} expires items on {}; updraft needs TTL on {TTL_ATTRIBUTE}",
                    attribute.unwrap_or("another attribute")
                )))
            };
        }
        Some(TimeToLiveStatus::Disabling) => {
            return Err(StoreError::Unavailable(format!(
                "TTL on table {name} is being disabled; DynamoDB allows enabling it again once \
                 that finishes (up to an hour)"
            )));
        }
        _ => {}
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL_ATTRIBUTE)
        .build()
        .map_err(|e| unavailable("UpdateTimeToLive", e))?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Another `updraft` enabled it between our describe and update.
        Err(e)
            if e.as_service_error().is_some_and(|se| {
                se.code() == Some("ValidationException")
                    && se
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("already enabled"))
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(unavailable("UpdateTimeToLive", e)),
    }
}
