//! Finding holders of a lost box's root on the LAN, from the beacons boxes
//! broadcast ([`pastiche_core::wire::beacon`], UDP port 7468 every 5 s).
//!
//! A recovering machine has no buddy list: it listens for beacons for a
//! little longer than one beacon interval and takes every box it hears
//! (appliance or firmware) as a holder to ask. The beacon is
//! unauthenticated and proves nothing; a holder is trusted only for the
//! signature of the record it serves, and one that never paired with the
//! box says so at the hello.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pastiche_core::wire::beacon::{Beacon, BEACON_INTERVAL_MS, BEACON_LEN};
use pastiche_core::NodeId;

use super::FindHolders;

/// How long to listen by default: one beacon interval and a second.
pub const DEFAULT_WAIT: Duration = Duration::from_millis(BEACON_INTERVAL_MS + 1_000);
/// Boxes taken from the LAN at most (a flood of beacons asks no more).
const MAX_HOLDERS: usize = 64;

/// Holders heard on the LAN.
pub struct LanBeacons {
    /// Where to listen (`0.0.0.0:7468` by default).
    pub listen: SocketAddr,
    /// For how long.
    pub wait: Duration,
    /// What was heard, for the report.
    heard: Mutex<String>,
}

impl LanBeacons {
    /// Listens on `listen` for `wait`.
    pub fn new(listen: SocketAddr, wait: Duration) -> LanBeacons {
        LanBeacons { listen, wait, heard: Mutex::new(String::new()) }
    }

    fn listen(&self) -> std::io::Result<Vec<String>> {
        let socket = UdpSocket::bind(self.listen).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (a pastiche daemon running here holds the port: stop it, or give --via HOST:PORT)"
            } else {
                ""
            };
            std::io::Error::new(e.kind(), format!("{e}{hint}"))
        })?;
        let deadline = Instant::now() + self.wait;
        let mut found: Vec<String> = Vec::new();
        let mut buf = [0u8; 512];
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            socket.set_read_timeout(Some(left))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => return Err(e),
            };
            if n != BEACON_LEN {
                continue;
            }
            let Ok(beacon) = Beacon::decode(&buf[..n]) else { continue };
            let holder = SocketAddr::new(from.ip(), beacon.tcp_port).to_string();
            if !found.contains(&holder) && found.len() < MAX_HOLDERS {
                found.push(holder);
            }
        }
        Ok(found)
    }
}

impl FindHolders for LanBeacons {
    fn find(&self, _node: &NodeId) -> Vec<String> {
        let (found, heard) = match self.listen() {
            Ok(found) => {
                let heard = format!(
                    "listened for LAN beacons on UDP {} for {:.0} s: heard {} box{}",
                    self.listen,
                    self.wait.as_secs_f64(),
                    found.len(),
                    if found.len() == 1 { "" } else { "es" }
                );
                (found, heard)
            }
            Err(e) => (Vec::new(), format!("could not listen for LAN beacons on UDP {}: {e}", self.listen)),
        };
        *self.heard.lock().unwrap_or_else(|e| e.into_inner()) = heard;
        found
    }

    fn describe(&self) -> Option<String> {
        Some(self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}
