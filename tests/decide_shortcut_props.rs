//! Property test of the update check's shortcut: deciding without the device's item
//! (`decide_without_device`, then `decide_update` with the item only when it asks for it) gives
//! exactly the decision `decide_update` gives with the item, over random apps, devices and
//! requests. The one assumption is the invariant the override writers keep: a device with a
//! channel override belongs to an app whose items carry the `device_overrides` marker (a
//! marker without any override is allowed: it only costs reads).

use std::collections::BTreeSet;

use proptest::prelude::*;
use updraft::domain::decide::{Decision, decide_update, decide_without_device};
use updraft::domain::device::{ChannelSource, DeviceState};
use updraft::domain::item::{AttrValue, Item};
use updraft::domain::keys::DEVICE_OVERRIDES_SK;
use updraft::domain::protocol::parse_update_request;
use updraft::domain::snapshot::AppSnapshot;

const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";
const VERSIONS: &[&str] = &["1.0.0", "1.0.1", "2.0.0", "builtin"];
const CHANNELS: &[&str] = &["production", "beta", "nightly"];
const DEVICES: &[&str] = &[
    "6a1f0b3e-1111-4222-8333-9c2d00000000",
    "00000000-0000-4000-8000-0000000000b2",
    "00000000-0000-4000-8000-0000000000c3",
    "ffffffff-0000-4000-8000-00000000000d",
];

fn s(v: &str) -> AttrValue {
    AttrValue::S(v.to_owned())
}

fn version() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VERSIONS)
}

/// A release item: a version with the gates that a decision passes through, and sometimes a
/// rollout of another version.
fn release_item() -> impl Strategy<Value = Item> {
    (
        version(),
        prop::collection::vec(any::<bool>(), 7),
        prop::sample::select(&["none", "major", "minor", "patch"][..]),
        prop::option::weighted(
            0.7,
            (
                version(),
                0u32..=100,
                prop::sample::select(&["active", "active", "paused", "aborted"][..]),
            ),
        ),
    )
        .prop_map(|(v, flags, dau, rollout)| {
            let mut item = Item::new();
            item.insert("version".into(), s(v));
            if v != "builtin" {
                item.insert("bundle".into(), s("com.example.app/b.zip"));
                item.insert("checksum".into(), s(SUM));
            }
            item.insert("paused".into(), AttrValue::Bool(flags[0] && flags[1]));
            item.insert("allow_self_assign".into(), AttrValue::Bool(flags[2]));
            item.insert(
                "allow_emulator".into(),
                AttrValue::Bool(flags[3] || flags[4]),
            );
            item.insert("allow_dev".into(), AttrValue::Bool(flags[5] || flags[4]));
            item.insert("allow_prod".into(), AttrValue::Bool(flags[6] || flags[4]));
            item.insert("disable_auto_update".into(), s(dau));
            if let Some((rv, percent, state)) = rollout {
                item.insert("rollout_id".into(), s(&format!("r-{rv}-{percent}")));
                item.insert("rollout_version".into(), s(rv));
                if rv != "builtin" {
                    item.insert("rollout_bundle".into(), s("com.example.app/r.zip"));
                    item.insert("rollout_checksum".into(), s(SUM));
                }
                item.insert(
                    "rollout_percent".into(),
                    AttrValue::N(serde_json::Number::from(percent)),
                );
                item.insert("rollout_state".into(), s(state));
            }
            item
        })
}

fn device() -> impl Strategy<Value = Option<DeviceState>> {
    prop::option::of((
        prop::option::of(prop::sample::select(
            &["production", "beta", "nightly", "gone"][..],
        )),
        any::<bool>(),
        prop::collection::btree_set(version(), 0..=2),
    ))
    .prop_map(|d| {
        d.map(|(channel, by_operator, failed)| DeviceState {
            channel: channel.map(str::to_owned),
            channel_source: channel.map(|_| {
                if by_operator {
                    ChannelSource::Operator
                } else {
                    ChannelSource::Device
                }
            }),
            failed_versions: failed
                .into_iter()
                .map(str::to_owned)
                .collect::<BTreeSet<_>>(),
            last_seen: None,
        })
    })
}

/// The app's items: an `app` item, releases of some channels and platforms, and the marker
/// (`marker`, or forced by an override on the device, as the writers guarantee).
fn app_items() -> impl Strategy<Value = Vec<(String, Item)>> {
    (
        prop::sample::select(CHANNELS),
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(CHANNELS),
                prop::sample::select(&["all", "all", "android", "ios"][..]),
                release_item(),
            ),
            0..5,
        ),
    )
        .prop_map(|(default, legacy, releases)| {
            let mut app = Item::new();
            app.insert("default_channel".into(), s(default));
            app.insert("legacy_channel_self".into(), AttrValue::Bool(legacy));
            let mut items = vec![("app".to_owned(), app)];
            for (channel, target, item) in releases {
                items.push((format!("release#{channel}#{target}"), item));
            }
            items
        })
}

fn request() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["android", "ios"][..]),
        prop::sample::select(&["1.0.0", "1.1", "2.0.0"][..]),
        version(),
        prop::sample::select(DEVICES),
        prop::sample::select(&["", "production", "beta", "nightly", "nope"][..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(platform, build, name, device, channel, emulator, prod)| {
            serde_json::json!({
                "platform": platform,
                "device_id": device,
                "app_id": "com.example.app",
                "custom_id": "",
                "version_build": build,
                "version_code": "1",
                "version_os": "14",
                "version_name": name,
                "plugin_version": "8.51.23",
                "is_emulator": emulator,
                "is_prod": prod,
                "defaultChannel": channel,
            })
            .to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_shortcut_decides_exactly_as_the_full_decision(
        items in prop::option::of(app_items()),
        marker in any::<bool>(),
        device in device(),
        body in request(),
    ) {
        let req = parse_update_request(body.as_bytes()).expect("a valid update check");
        let snapshot = items.map(|mut items| {
            // The writers' invariant: an override exists only in an app with the marker.
            if marker || device.as_ref().is_some_and(|d| d.channel.is_some()) {
                items.push((DEVICE_OVERRIDES_SK.to_owned(), Item::new()));
            }
            AppSnapshot::from_items(items.iter().map(|(sk, i)| (sk.as_str(), i)))
        });
        let full = decide_update(&req, snapshot.as_ref(), device.as_ref());
        let shortcut = match decide_without_device(&req, snapshot.as_ref()) {
            Ok(decision) => decision,
            Err(_) => decide_update(&req, snapshot.as_ref(), device.as_ref()),
        };
        prop_assert_eq!(&shortcut, &full);
    }
}

/// The shortcut is taken where the cost is: an up-to-date device of an app without device
/// overrides needs no device item, and neither does a check of an unknown app.
#[test]
fn up_to_date_devices_of_apps_without_overrides_need_no_device_item() {
    let mut release = Item::new();
    release.insert("version".into(), s("1.0.1"));
    release.insert("bundle".into(), s("com.example.app/b.zip"));
    release.insert("checksum".into(), s(SUM));
    let items = [("release#production#all".to_owned(), release)];
    let snap = AppSnapshot::from_items(items.iter().map(|(sk, i)| (sk.as_str(), i)));
    let body = |name: &str| {
        serde_json::json!({
            "platform": "android", "device_id": DEVICES[0], "app_id": "com.example.app",
            "version_build": "1.0.0", "version_name": name, "is_emulator": false, "is_prod": true,
        })
        .to_string()
    };
    let up_to_date = body("1.0.1");
    let req = parse_update_request(up_to_date.as_bytes()).unwrap();
    assert_eq!(
        decide_without_device(&req, Some(&snap)).map(|d| d.label()),
        Ok("no_new_version_available")
    );
    assert_eq!(
        decide_without_device(&req, None).map(|d| d.label()),
        Ok("app_not_found")
    );
    // An offer must first learn whether the version failed on this device.
    let behind = body("1.0.0");
    let req = parse_update_request(behind.as_bytes()).unwrap();
    assert!(decide_without_device(&req, Some(&snap)).is_err());
    // With the marker, even an up-to-date device's override may send it elsewhere.
    let mut marked = items.to_vec();
    marked.push((DEVICE_OVERRIDES_SK.to_owned(), Item::new()));
    let snap = AppSnapshot::from_items(marked.iter().map(|(sk, i)| (sk.as_str(), i)));
    let req = parse_update_request(up_to_date.as_bytes()).unwrap();
    assert!(decide_without_device(&req, Some(&snap)).is_err());
    assert!(matches!(
        decide_update(&req, Some(&snap), None),
        Decision::Refuse(_)
    ));
}
