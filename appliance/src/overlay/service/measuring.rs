//! Keeping each buddy's coverage and round-trip time fresh: the overlay
//! thread routes a coverage probe to every buddy's nodeId every
//! [`BUDDY_MEASURE_EVERY`] (one small datagram per buddy, at most
//! `[overlay] buddies` of them), and records the answers in
//! `DATA/lan/measured.json` for `pastiche buddy list`. The replacement
//! policy reads the same measurements: a buddy whose coverage fell is
//! replaced, and discovery runs again ([`super::replacing`]).

use std::net::SocketAddr;
use std::time::Duration;

use pastiche_core::wire::overlay::PeerAddr;

use super::Service;
use crate::buddy::admission::unix_now;
use crate::overlay::addr::to_socket;
use crate::overlay::files::{self, Measured};
use crate::sync::load_buddies;

/// Each buddy's coverage is measured (a probe routed to its nodeId) this often.
pub(super) const BUDDY_MEASURE_EVERY: Duration = Duration::from_secs(60);

impl Service {
    /// A measuring probe's answer from `addr`: when it is a buddy, its
    /// coverage and round-trip time (the network overlay's, measured by its
    /// pings, else the probe's) are saved.
    pub(super) fn buddy_measured(&mut self, addr: PeerAddr, coverage_ppm: u32, probe_rtt_us: Option<u32>) {
        let ip = to_socket(&addr).ip();
        let Ok(buddies) = load_buddies(&self.data) else { return };
        let of_buddy: Vec<String> = buddies
            .iter()
            .filter(|b| b.addr.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip))
            .map(|b| b.addr.clone())
            .collect();
        if of_buddy.is_empty() {
            return;
        }
        let peer_rtt = self.net.state().peers().find(|p| to_socket(&p.addr).ip() == ip).map(|p| p.distance);
        let rtt_us = peer_rtt.or(probe_rtt_us);
        let mut map = files::measured(&self.data).unwrap_or_default();
        map.retain(|a, _| buddies.iter().any(|b| b.addr == *a));
        for a in of_buddy {
            let m = Measured {
                coverage: f64::from(coverage_ppm) / 1e6,
                rtt_ms: rtt_us.map(|r| f64::from(r) / 1000.0),
                at: unix_now(),
            };
            map.insert(a, m);
        }
        if let Err(e) = files::save_measured(&self.data, &map) {
            tracing::warn!("cannot save the buddies' measurements: {e:#}");
        }
    }
}
