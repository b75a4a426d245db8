//! Property tests: no body a stranger can send, and no item an operator can write, makes the
//! parse → decide path panic.

use proptest::prelude::*;
use updraft::domain::decide::{Decision, decide_update};
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::protocol::parse_update_request;
use updraft::domain::snapshot::AppSnapshot;

fn field_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z0-9.\\-]{0,12}".prop_map(serde_json::Value::from),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("android"),
            Just("ios"),
            Just("electron"),
            Just("builtin"),
            Just("1.0"),
            Just("2.3.4"),
            Just("1.0.0-rc.1"),
            Just("com.example.app"),
            Just("6A1F0B3E-1111-4222-8333-9C2D00000000"),
            Just("production"),
            Just("beta"),
            Just(""),
        ]
        .prop_map(serde_json::Value::from),
    ]
}

const FIELDS: &[&str] = &[
    "platform",
    "device_id",
    "app_id",
    "custom_id",
    "version_build",
    "version_code",
    "version_os",
    "version_name",
    "plugin_version",
    "is_emulator",
    "is_prod",
    "install_source",
    "defaultChannel",
    "key_id",
];

fn body() -> impl Strategy<Value = serde_json::Value> {
    proptest::collection::vec(field_value(), FIELDS.len()).prop_map(|values| {
        let mut obj = serde_json::Map::new();
        for (k, v) in FIELDS.iter().zip(values) {
            if !v.is_null() {
                obj.insert((*k).to_owned(), v);
            }
        }
        serde_json::Value::Object(obj)
    })
}

fn attr() -> impl Strategy<Value = Option<AttrValue>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some(AttrValue::Bool(b))),
        prop_oneof![
            Just("1.0.3"),
            Just("2.0.0"),
            Just("builtin"),
            Just("none"),
            Just("patch"),
            Just("minor"),
            Just("major"),
            Just("version_number"),
            Just("1.0"),
            Just("a:b"),
            Just("https://x.test/b.zip"),
            Just("6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5"),
            Just(""),
        ]
        .prop_map(|s| Some(AttrValue::S(s.to_owned()))),
        "\\PC{0,20}".prop_map(|s| Some(AttrValue::S(s))),
    ]
}

const ATTRS: &[&str] = &[
    "version",
    "bundle",
    "url",
    "checksum",
    "session_key",
    "key_id",
    "disable_auto_update",
    "disable_auto_update_under_native",
    "min_update_version",
    "allow_emulator",
    "allow_device",
    "allow_dev",
    "allow_prod",
    "allow_self_assign",
    "paused",
    "link",
    "comment",
];

fn item() -> impl Strategy<Value = Item> {
    proptest::collection::vec(attr(), ATTRS.len()).prop_map(|values| {
        ATTRS
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_update_request(&bytes);
    }

    #[test]
    fn any_body_and_items_decide_without_panic(
        body in body(),
        items in proptest::collection::vec((prop_oneof![Just("release#production#all"), Just("release#beta#android"), Just("release#production#ios"), Just("app")], item()), 0..4),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let snap = AppSnapshot::from_items(items.iter().map(|(k, v)| (*k, v)));
        if let Ok(req) = parse_update_request(&bytes) {
            let device = updraft::domain::device::DeviceState { failed_versions: ["1.0.3".to_owned()].into(), channel: Some("beta".into()), ..Default::default() };
            let decision = decide_update(&req, Some(&snap), Some(&device));
            // An offer always has something downloadable and a checksum.
            if let Decision::Offer { release, .. } = decision {
                prop_assert!(release.checksum.is_some());
                prop_assert!(release.bundle.is_some() || release.url.is_some());
            }
            let _ = decide_update(&req, None, None);
            let _ = decide_update(&req, Some(&snap), None);
        }
    }
}
