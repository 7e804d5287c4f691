//! The per-address connection cap (`http.max_connections_per_ip`): one address may hold
//! only so many open connections across all I/O threads, so a single host (a slowloris
//! holding sockets open, a client leaking them) cannot take the whole
//! `server.max_connections`. Its memory is one entry per address with a connection open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per address, against a cap.
#[derive(Debug)]
pub struct PeerCap {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it (the connection ends) frees its place. Holds
/// nothing when there is no cap.
#[derive(Debug)]
pub struct PeerPermit {
    place: Option<(Arc<PeerCap>, IpAddr)>,
}

impl PeerCap {
    /// At most `max` connections per address; 0 = no cap.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` at its cap. Always a place
    /// when there is no cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPermit> {
        if self.max == 0 {
            return Some(PeerPermit { place: None });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerPermit {
            place: Some((Arc::clone(self), ip)),
        })
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let Some((cap, ip)) = &self.place else {
            return;
        };
        let mut open = cap.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(cap: &PeerCap) -> usize {
        cap.open.lock().unwrap().len()
    }

    #[test]
    fn an_address_gets_its_places_and_no_more() {
        let cap = PeerCap::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = cap.admit(a).unwrap();
        let second = cap.admit(a).unwrap();
        assert!(cap.admit(a).is_none(), "a third from the same address");
        assert!(cap.admit(b).is_some(), "another address is unaffected");
        drop(first);
        let third = cap.admit(a).unwrap();
        drop((second, third));
        assert_eq!(addresses(&cap), 0, "no entry outlives its connections");
    }

    #[test]
    fn no_cap_admits_everyone_and_tracks_nothing() {
        let cap = PeerCap::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let permits: Vec<_> = (0..1000).map(|_| cap.admit(a).unwrap()).collect();
        assert!(permits.iter().all(|p| p.place.is_none()));
        assert_eq!(addresses(&cap), 0);
    }
}
