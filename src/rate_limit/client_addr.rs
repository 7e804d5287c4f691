//! The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
//! address its forwarding headers name that is not itself a trusted proxy (walking
//! `Forwarded` or `X-Forwarded-For` from the right, the only end a proxy can vouch for).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Which peers' forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts these networks (none: headers are never believed).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The client behind `peer`, from `headers` when `peer` is trusted.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(addr) if self.trusts(*addr) => nearest = *addr,
                Some(addr) => return canonical(*addr),
                // An unreadable hop (`unknown`, an obfuscated name, garbage): nothing
                // beyond it can be believed.
                None => return nearest,
            }
        }
        nearest
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// The hops `Forwarded` (RFC 7239, its `for=` parameters) or else `X-Forwarded-For` name,
/// nearest last; `None` for a hop that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(v) => v.split(',').map(|s| parse_node(s.trim())).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// An address, with or without a port, IPv6 with or without brackets.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(proxies().client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let p = proxies();
        // The client forged the leftmost entry; the trusted proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Several headers are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(p.client(ip("::1"), &h), ip("198.51.100.8"));
        // Only trusted hops: the farthest of them.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.1.1.1"));
        // Garbage stops the walk at the last hop that could be believed.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, nonsense, 10.0.0.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.5"));
        // A mapped IPv4 peer is trusted as its IPv4 self.
        let h = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.9"));
    }

    #[test]
    fn forwarded_wins_and_its_nodes_parse() {
        let p = proxies();
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            (
                "forwarded",
                r#"for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711""#,
            ),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "For=198.51.100.3:80")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.3"));
    }
}
