//! Evidence about a release that one client cannot fake: each device counts at most once as
//! an attempt and once as a failure, each source network (IPv4 /24, IPv6 /48) counts at most
//! `auto_pause_devices_per_network` devices, and a pause needs failures from
//! `auto_pause_min_networks` networks. A forger on one network, naming any number of device
//! ids, moves these counts by at most that cap.

use std::net::IpAddr;

/// The source network of a request: the /24 of an IPv4 address, the /48 of an IPv6 one
/// (an IPv4-mapped IPv6 address is IPv4). Unknown sources all share one network.
pub fn network_of(ip: Option<IpAddr>) -> String {
    let ip = ip.map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    });
    match ip {
        Some(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        None => "unknown".to_owned(),
    }
}

/// What a device's event says about a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvidenceKind {
    /// The device installed it, or tried to (`set` or a failure).
    Attempt,
    /// It failed deterministically on the device (`FAILURE_ACTIONS`).
    Failure,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Attempt => "a",
            EvidenceKind::Failure => "f",
        }
    }
}

/// One release item as served between two resumes: `epoch` is its `resumed_at` (0 before
/// any), so `updraft resume` starts the evidence afresh.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvidenceKey {
    pub app_id: String,
    /// The release item's sort key, `release#<channel>#<platform>`.
    pub sk: String,
    pub version: String,
    pub epoch: u64,
}

impl EvidenceKey {
    /// The key's name inside the app's evidence items.
    pub fn id(&self) -> String {
        format!("{}#{}#{}", self.sk, self.version, self.epoch)
    }
}

/// "This device, on this network, attempted (or failed) this release."
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvidenceMark {
    pub key: EvidenceKey,
    pub kind: EvidenceKind,
    pub device_id: String,
    pub network: String,
    /// Devices of one network counted for this kind, at most (`auto_pause_devices_per_network`).
    pub network_cap: u64,
}

/// A release's evidence: distinct devices, each network counting at most its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evidence {
    pub attempts: u64,
    pub failures: u64,
    /// Networks with at least one failed device.
    pub failing_networks: u64,
}

/// What recording one mark changes in its release's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarkEffect {
    /// The device was not counted before for this kind, and its network was under its cap.
    pub counted: bool,
    /// It was the first device of this kind from its network.
    pub new_network: bool,
}

/// The first device of a network, the cap, or a device seen before: what a mark does, from
/// whether the device was new and the network's count before it (pure, for both stores).
pub fn mark_effect(device_is_new: bool, network_count_before: u64, cap: u64) -> MarkEffect {
    let counted = device_is_new && network_count_before < cap;
    MarkEffect {
        counted,
        new_network: counted && network_count_before == 0,
    }
}

impl Evidence {
    /// The evidence after one mark's effect.
    pub fn with(mut self, kind: EvidenceKind, effect: MarkEffect) -> Self {
        if effect.counted {
            match kind {
                EvidenceKind::Attempt => self.attempts += 1,
                EvidenceKind::Failure => {
                    self.failures += 1;
                    self.failing_networks += u64::from(effect.new_network);
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = |s: &str| network_of(Some(s.parse().unwrap()));
        assert_eq!(n("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(n("203.0.113.200"), n("203.0.113.1"));
        assert_ne!(n("203.0.114.1"), n("203.0.113.1"));
        assert_eq!(n("::ffff:203.0.113.9"), "203.0.113.0/24");
        assert_eq!(n("2001:db8:abcd:12::1"), "2001:db8:abcd::/48");
        assert_eq!(n("2001:db8:abcd:ffff::1"), n("2001:db8:abcd:1::2"));
        assert_eq!(network_of(None), "unknown");
    }

    #[test]
    fn marks_count_once_and_up_to_the_cap() {
        assert_eq!(
            mark_effect(true, 0, 10),
            MarkEffect {
                counted: true,
                new_network: true
            }
        );
        assert_eq!(
            mark_effect(true, 3, 10),
            MarkEffect {
                counted: true,
                new_network: false
            }
        );
        assert!(!mark_effect(true, 10, 10).counted, "the network is full");
        assert!(!mark_effect(false, 0, 10).counted, "the device was counted");
        let e = Evidence::default()
            .with(EvidenceKind::Attempt, mark_effect(true, 0, 10))
            .with(EvidenceKind::Failure, mark_effect(true, 0, 10))
            .with(EvidenceKind::Failure, mark_effect(true, 1, 10))
            .with(EvidenceKind::Failure, mark_effect(false, 2, 10));
        assert_eq!(
            e,
            Evidence {
                attempts: 1,
                failures: 2,
                failing_networks: 1
            }
        );
    }
}
