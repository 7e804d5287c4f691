//! Protected mode: while no key file is in force, the admin routes answer only to clients on
//! this machine (loopback peers, the check socket, and the configured local networks), as
//! Redis serves only loopback clients while it has no password. Which routes are admin is
//! the route table's to say (a row's scope); this module says who is local.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A network protected mode admits: a CIDR block, one address, or `attached` (the host's
/// own networks, read at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LocalNet {
    /// A block (one address is a /32 or /128).
    Block(IpNet),
    /// Every network this host has an interface on.
    Attached,
}

/// The keyword for [`LocalNet::Attached`].
const ATTACHED: &str = "attached";

impl TryFrom<String> for LocalNet {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        if s == ATTACHED {
            return Ok(Self::Attached);
        }
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(|net| Self::Block(net.trunc()))
            .map_err(|_| {
                format!("{s:?} is not a CIDR block (10.0.0.0/8), an address, or \"{ATTACHED}\"")
            })
    }
}

impl From<LocalNet> for String {
    fn from(net: LocalNet) -> Self {
        match net {
            LocalNet::Block(net) => net.to_string(),
            LocalNet::Attached => ATTACHED.to_owned(),
        }
    }
}

/// What `[auth]` says of protected mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedSettings {
    /// `auth.protected_mode`.
    pub enabled: bool,
    /// `auth.local_networks`.
    pub local_networks: Vec<LocalNet>,
}

/// Protected mode as it applies: on or off, and the networks that count as local beside
/// loopback (`attached` resolved to this host's networks at start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedMode {
    enabled: bool,
    local: Vec<IpNet>,
}

impl ProtectedMode {
    /// Off: anonymous callers reach the admin routes from anywhere while there are no keys.
    pub fn off() -> Self {
        Self::default()
    }

    /// From the settings, `attached` read from this host's interfaces now.
    pub fn new(settings: &ProtectedSettings) -> Self {
        Self::with_attached(settings, attached_networks)
    }

    fn with_attached(settings: &ProtectedSettings, attached: impl FnOnce() -> Vec<IpNet>) -> Self {
        let mut local: Vec<IpNet> = settings
            .local_networks
            .iter()
            .filter_map(|net| match net {
                LocalNet::Block(net) => Some(*net),
                LocalNet::Attached => None,
            })
            .collect();
        if settings.local_networks.contains(&LocalNet::Attached) {
            local.extend(attached());
        }
        local.sort();
        local.dedup();
        Self {
            enabled: settings.enabled,
            local,
        }
    }

    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.enabled
    }

    /// The networks counted as local beside loopback.
    pub fn local_networks(&self) -> &[IpNet] {
        &self.local
    }

    /// Whether an anonymous caller from `client` may reach an admin route: always when off;
    /// when on, only from loopback (an IPv4-mapped one too, as a dual-stack listener sees
    /// it) or a local network.
    pub fn admits(&self, client: IpAddr) -> bool {
        if !self.enabled {
            return true;
        }
        let client = client.to_canonical();
        client.is_loopback() || self.local.iter().any(|net| net.contains(&client))
    }
}

/// The networks of this host's interfaces, loopback's aside (always admitted). A host whose
/// interfaces cannot be read has none (a WARN says so): protected mode then admits loopback
/// only, the safe side.
fn attached_networks() -> Vec<IpNet> {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(e) => {
            tracing::warn!(error = %e, "auth.local_networks: cannot read this host's interfaces; \"attached\" admits none");
            return Vec::new();
        }
    };
    addrs
        .filter_map(|ifa| {
            let (address, netmask) = (ifa.address?, ifa.netmask?);
            let net = match (address.as_sockaddr_in(), netmask.as_sockaddr_in()) {
                (Some(a), Some(m)) => IpNet::with_netmask(a.ip().into(), m.ip().into()),
                _ => match (address.as_sockaddr_in6(), netmask.as_sockaddr_in6()) {
                    (Some(a), Some(m)) => IpNet::with_netmask(a.ip().into(), m.ip().into()),
                    _ => return None,
                },
            };
            net.ok()
                .map(|n| n.trunc())
                .filter(|n| !n.addr().is_loopback())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: bool, nets: &[&str]) -> ProtectedSettings {
        ProtectedSettings {
            enabled,
            local_networks: nets
                .iter()
                .map(|n| LocalNet::try_from((*n).to_owned()).unwrap())
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn on_it_admits_loopback_and_local_networks_only() {
        let mode = ProtectedMode::new(&settings(true, &["10.9.0.0/16", "2001:db8::7"]));
        assert!(mode.is_on());
        for local in [
            "127.0.0.1",
            "127.3.4.5",
            "::1",
            "::ffff:127.0.0.1",
            "10.9.200.1",
            "2001:db8::7",
        ] {
            assert!(mode.admits(ip(local)), "{local}");
        }
        for remote in [
            "192.0.2.2",
            "10.10.0.1",
            "::ffff:192.0.2.2",
            "fd00::2",
            "2001:db8::8",
            "0.0.0.0",
        ] {
            assert!(!mode.admits(ip(remote)), "{remote}");
        }
    }

    #[test]
    fn off_it_admits_anyone() {
        for mode in [
            ProtectedMode::off(),
            ProtectedMode::new(&settings(false, &[])),
        ] {
            assert!(!mode.is_on());
            assert!(mode.admits(ip("192.0.2.2")));
        }
    }

    #[test]
    fn attached_is_read_once_and_merged_with_the_blocks() {
        let mut reads = 0;
        let mode = ProtectedMode::with_attached(
            &settings(true, &["attached", "10.0.0.0/8", "attached"]),
            || {
                reads += 1;
                vec![
                    "172.18.0.0/16".parse().unwrap(),
                    "10.0.0.0/8".parse().unwrap(),
                ]
            },
        );
        assert_eq!(reads, 1);
        assert_eq!(
            mode.local_networks(),
            &[
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "172.18.0.0/16".parse().unwrap()
            ]
        );
        assert!(mode.admits(ip("172.18.0.1")));
    }

    #[test]
    fn this_hosts_networks_leave_loopback_out() {
        // Whatever this machine has, loopback's own network is never listed (it is always
        // admitted), and each is listed as a network, not as an address.
        for net in attached_networks() {
            assert!(!net.addr().is_loopback(), "{net}");
            assert_eq!(net, net.trunc());
        }
    }

    #[test]
    fn local_networks_are_blocks_addresses_or_attached() {
        let parse = |s: &str| LocalNet::try_from(s.to_owned());
        assert_eq!(parse(" attached "), Ok(LocalNet::Attached));
        assert_eq!(
            parse("10.1.2.3"),
            Ok(LocalNet::Block("10.1.2.3/32".parse().unwrap()))
        );
        // A block written with host bits names its network.
        assert_eq!(
            parse("172.18.0.1/16"),
            Ok(LocalNet::Block("172.18.0.0/16".parse().unwrap()))
        );
        assert_eq!(
            parse("fd00::/8"),
            Ok(LocalNet::Block("fd00::/8".parse().unwrap()))
        );
        for bad in ["", "lan", "10.0.0.0/33", "Attached"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("attached"), "{bad}: {err}");
        }
        assert_eq!(String::from(LocalNet::Attached), "attached");
    }
}
