//! Item attributes as DynamoDB and the embedded store hold them: the shared vocabulary of the
//! release contract, apart from the items' typed forms so that every domain module can read
//! attributes without importing another's types.

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
