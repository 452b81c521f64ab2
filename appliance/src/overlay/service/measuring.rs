//! Keeping each buddy's coverage and round-trip time fresh: every
//! [`BUDDY_MEASURE_EVERY`] the coverage overlay measures each buddy it can
//! reach (one coverage query and its answer per buddy, at most `[overlay]
//! buddies` of them; appliances and the firmware answer alike), and the
//! answers are recorded in `DATA/lan/measured.json` for `pastiche buddy
//! list`. The replacement policy reads the same measurements: a buddy whose
//! coverage fell is replaced, and discovery runs again
//! ([`super::replacing`]).

use std::net::{IpAddr, SocketAddr};
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
    /// The overlay addresses of the buddies: the network overlay's node at
    /// a buddy's IP, else the LAN neighbour there (a buddy neither holds
    /// nor hears is not measured).
    pub(super) fn buddies_to_measure(&self) -> Vec<PeerAddr> {
        let buddies = load_buddies(&self.data).unwrap_or_default();
        let ips = buddies.iter().filter_map(|b| b.addr.parse::<SocketAddr>().ok()).map(|a| a.ip());
        let mut out: Vec<PeerAddr> = ips.filter_map(|ip| self.overlay_addr_of(ip)).collect();
        out.dedup();
        out
    }

    /// The overlay address of the box at `ip`, if the network overlay holds
    /// it or its beacon is heard.
    pub(super) fn overlay_addr_of(&self, ip: IpAddr) -> Option<PeerAddr> {
        let held = self.net.state().peers().map(|p| p.addr).find(|a| to_socket(a).ip() == ip);
        held.or_else(|| self.lan.iter().map(|n| n.addr).find(|a| to_socket(a).ip() == ip))
    }

    /// A coverage measurement of the box at `addr` (a coverage overlay's,
    /// or a probe's answer): when it is a buddy, its coverage and round-trip
    /// time (the network overlay's, measured by its pings, else this
    /// measurement's) are saved.
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
        // The replacement policy's view of its coverage, too.
        self.rep.measured(ip, f64::from(coverage_ppm) / 1e6);
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
