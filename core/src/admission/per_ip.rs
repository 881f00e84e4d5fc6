//! The per-client-address connection cap (`--max-connections-per-ip`).
//!
//! Process-wide, for every loop: one mutex, touched when a connection is
//! admitted at the door and when it ends, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::forwarded::canonical;

#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub fn new(max: usize) -> PerIp {
        PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Count one more connection from `ip`; `None` when it already holds
    /// the most it may. The address returned is the one to release.
    pub fn admit(&self, ip: IpAddr) -> Option<IpAddr> {
        let ip = canonical(ip);
        // A poisoned lock only means another thread panicked mid-update of
        // a counter: the map is still usable.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ip)
    }

    pub fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_address_and_mapped_v4() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.admit(a).unwrap();
        let _s2 = p.admit(mapped).unwrap();
        assert_eq!(p.admit(a), None);
        assert!(p.admit(b).is_some());
        p.release(s1);
        assert!(p.admit(mapped).is_some());
    }
}
