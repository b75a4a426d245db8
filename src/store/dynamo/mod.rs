//! The DynamoDB backend: releases, bundles, history and counters in the releases table
//! (`UPDRAFT_TABLE`, keys `app_id` + `sk`), devices and evidence in the devices table
//! (`UPDRAFT_DEVICES_TABLE`, keys `app_id` + `device_id`). This file holds what every
//! capability shares: the item encoding, the error conversions and paging.
//!
//! - `releases`: `DynamoStore`, the update check's one Query (`ReleaseStore`)
//! - `items`: operators' item reads, writes, listings and deletes (`ItemWriter`, `ItemQuery`)
//! - `history`: changes with their history entry in one transaction (`HistoryStore`)
//! - `devices`: `DynamoDevices`, channel overrides and failed versions (`DeviceStore`)
//! - `stats`: `DynamoStats`, sharded per-release action counters (`StatsSink`)
//! - `evidence`: the auto-pause and rollout evidence and its hourly counts (`EvidenceStore`)
//! - `tables`: creating the two tables (tests, first runs)

pub mod devices;
pub mod evidence;
pub mod history;
pub mod items;
pub mod releases;
pub mod stats;
pub mod tables;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::item::{AttrValue, Item};
use crate::store::StoreError;

/// Partition key: the app's reverse-domain id.
pub const PARTITION_KEY: &str = "app_id";
/// Sort key: `app`, `release#<channel>#<platform>`, `bundle#<version>`, …
pub const SORT_KEY: &str = "sk";

pub(crate) fn unavailable(what: &str, e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(format!("DynamoDB {what}: {}", DisplayErrorContext(e)))
}

/// The outcome of a conditional write: `Ok(true)` when it applied, `Ok(false)` when its
/// condition did not hold, an error for anything else.
pub(crate) fn conditional_write<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    what: &str,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(unavailable(what, e)),
    }
}

/// How a transaction that changes one item and appends history ended.
pub(crate) enum Outcome {
    Applied,
    /// The changed item's condition did not hold (it changed meanwhile).
    ConditionFailed,
    /// A concurrent transaction held the item: also a lost race.
    Conflict,
}

/// Sorts out a `TransactWriteItems` result: a cancelled transaction wrote nothing.
pub(crate) fn transaction_outcome<R: std::fmt::Debug>(
    result: Result<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
        aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
    >,
) -> Result<Outcome, StoreError> {
    let e = match result {
        Ok(_) => return Ok(Outcome::Applied),
        Err(e) => e,
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(ex)) = e.as_service_error() {
        let codes: Vec<&str> = ex
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .collect();
        let message = ex.message().unwrap_or_default();
        if codes.contains(&"ConditionalCheckFailed")
            || (codes.is_empty() && message.contains("ConditionalCheckFailed"))
        {
            return Ok(Outcome::ConditionFailed);
        }
        if codes.contains(&"TransactionConflict") || message.contains("TransactionConflict") {
            return Ok(Outcome::Conflict);
        }
    }
    if e.code() == Some("TransactionConflictException") {
        return Ok(Outcome::Conflict);
    }
    Err(unavailable("TransactWriteItems", e))
}

/// The attribute's type code, for messages and `AttrValue::Unsupported`.
fn type_code(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::B(_) => "B",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::Null(_) => "NULL",
        _ => "an unknown type",
    }
}

/// One DynamoDB value as the items use it. Other types are kept as `Unsupported`, so a
/// hand-written `paused` of type `S` or `L` is refused by name rather than read as "absent".
pub fn attr_from_dynamo(v: &AttributeValue) -> AttrValue {
    match v {
        AttributeValue::S(s) => AttrValue::S(s.clone()),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        // DynamoDB allows 38 digits; a number JSON cannot hold is unusable to us as well.
        AttributeValue::N(n) => match n.parse::<serde_json::Number>() {
            Ok(n) => AttrValue::N(n),
            Err(_) => AttrValue::Unsupported("N".into()),
        },
        other => AttrValue::Unsupported(type_code(other).into()),
    }
}

/// The DynamoDB form of an attribute; `None` for a value that only exists when read.
pub fn attr_to_dynamo(v: &AttrValue) -> Option<AttributeValue> {
    match v {
        AttrValue::S(s) => Some(AttributeValue::S(s.clone())),
        AttrValue::Bool(b) => Some(AttributeValue::Bool(*b)),
        AttrValue::N(n) => Some(AttributeValue::N(n.to_string())),
        AttrValue::Unsupported(_) => None,
    }
}

/// Splits a DynamoDB item into its sort key and its attributes; `None` without an `S` sort key.
pub(crate) fn from_dynamo(raw: &HashMap<String, AttributeValue>) -> Option<(String, Item)> {
    let sk = raw.get(SORT_KEY)?.as_s().ok()?.clone();
    let item = raw
        .iter()
        .filter(|(k, _)| k.as_str() != PARTITION_KEY && k.as_str() != SORT_KEY)
        .map(|(k, v)| (k.clone(), attr_from_dynamo(v)))
        .collect();
    Some((sk, item))
}

/// A full DynamoDB item: the keys (which win over attributes of the same name) and `item`.
pub(crate) fn to_dynamo(
    app_id: &str,
    sk: &str,
    item: &Item,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut raw = HashMap::with_capacity(item.len() + 2);
    for (name, value) in item {
        let v = attr_to_dynamo(value).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "item {sk}: attribute {name} has a type that cannot be written"
            ))
        })?;
        raw.insert(name.clone(), v);
    }
    raw.insert(PARTITION_KEY.into(), AttributeValue::S(app_id.to_owned()));
    raw.insert(SORT_KEY.into(), AttributeValue::S(sk.to_owned()));
    Ok(raw)
}

/// A string attribute value.
pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute value.
pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A number attribute of a raw item, when it holds a whole number.
pub(crate) fn n_of(raw: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    raw.get(name)?.as_n().ok()?.parse().ok()
}

/// A string attribute of a raw item.
pub(crate) fn s_of<'a>(raw: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    raw.get(name)?.as_s().ok().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_keeps_unknown_types_visible() {
        assert_eq!(
            attr_from_dynamo(&AttributeValue::S("x".into())),
            AttrValue::S("x".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::N("42".into())),
            AttrValue::N(42.into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::N("1e999".into())),
            AttrValue::Unsupported("N".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::L(vec![])),
            AttrValue::Unsupported("L".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::Null(true)),
            AttrValue::Unsupported("NULL".into())
        );
        assert_eq!(attr_to_dynamo(&AttrValue::Unsupported("L".into())), None);
        assert_eq!(
            attr_to_dynamo(&AttrValue::N(7.into())),
            Some(AttributeValue::N("7".into()))
        );
    }

    #[test]
    fn unsupported_values_never_reach_the_embedded_store() {
        // The embedded store's JSON form is unchanged, and refuses what it could not read back.
        let json = |v: &AttrValue| serde_json::to_string(v).ok();
        assert_eq!(json(&AttrValue::S("x".into())).as_deref(), Some("\"x\""));
        assert_eq!(json(&AttrValue::Bool(true)).as_deref(), Some("true"));
        assert_eq!(json(&AttrValue::N(3.into())).as_deref(), Some("3"));
        assert_eq!(json(&AttrValue::Unsupported("L".into())), None);
    }

    #[test]
    fn keys_win_over_attributes() {
        let mut item = Item::new();
        item.insert("sk".into(), AttrValue::S("evil".into()));
        item.insert("paused".into(), AttrValue::Bool(true));
        let raw = to_dynamo("com.example.app", "app", &item).unwrap();
        assert_eq!(raw["sk"], AttributeValue::S("app".into()));
        let (sk, back) = from_dynamo(&raw).unwrap();
        assert_eq!(sk, "app");
        assert_eq!(back.len(), 1);
    }
}
