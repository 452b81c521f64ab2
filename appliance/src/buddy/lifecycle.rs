//! Decommissioned clients: a buddy records each client's last contact (the
//! start of its last session, `last seen` in `pastiche clients list`). A
//! client silent for half the grace period (default 90 days,
//! `[serve] client_grace_days`) is warned about (log, `clients list`, the
//! status page's health); one silent for the whole period is treated as
//! decommissioned: everything it stored is released
//! ([`BuddyStorage::release`]) and the next prune reclaims the space. It
//! stays admitted: should it come back, it sees epoch 0 and ships
//! everything again.

use serde::Serialize;

use super::admission::unix_now;
use super::{BuddyStorage, ClientInfo};
use crate::health::{Alert, Verdict};

/// The grace period by default: 90 days.
pub const DEFAULT_GRACE_DAYS: u64 = 90;

const DAY: u64 = 86_400;

/// Where a client stands in the grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Heard from within half the grace period.
    Active,
    /// Silent for half the grace period or more: released at `release_at`.
    Silent {
        /// Unix seconds when its data is released if it stays silent.
        release_at: u64,
    },
    /// Silent for the whole grace period: its data is (to be) released.
    Decommissioned,
}

/// How long clients may stay silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grace {
    /// Seconds of silence before a client is decommissioned (0: never).
    pub secs: u64,
}

impl Grace {
    /// A grace period of `days` days (0: clients are never decommissioned).
    pub fn days(days: u64) -> Grace {
        Grace { secs: days.saturating_mul(DAY) }
    }

    /// Where a client last seen at `last_seen` stands at `now`.
    pub fn standing(&self, last_seen: u64, now: u64) -> Standing {
        let silent = now.saturating_sub(last_seen);
        if self.secs == 0 || silent < self.secs / 2 {
            Standing::Active
        } else if silent < self.secs {
            Standing::Silent { release_at: last_seen.saturating_add(self.secs) }
        } else {
            Standing::Decommissioned
        }
    }
}

/// One client released by a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The client.
    pub client: ClientInfo,
    /// Bytes it was charged.
    pub bytes: u64,
}

/// Releases the data of every client silent for the whole grace period
/// that still holds any, logging each line through `log`; warns (once a
/// sweep) about clients silent for half the period.
pub fn sweep(storage: &BuddyStorage, grace: Grace, log: &dyn Fn(&str)) -> anyhow::Result<Vec<Released>> {
    let now = unix_now();
    let mut released = Vec::new();
    for c in storage.clients()? {
        let silent_days = now.saturating_sub(c.last_seen) / DAY;
        match grace.standing(c.last_seen, now) {
            Standing::Active => {}
            Standing::Silent { release_at } => log(&format!(
                "client {} ({}) silent for {silent_days} days: its data is released in {} days unless it comes back",
                c.key,
                display_name(&c),
                release_at.saturating_sub(now).div_ceil(DAY)
            )),
            Standing::Decommissioned if holds_anything(&c) => {
                let bytes = storage.release(&c.key)?;
                storage.record_notice(&c.key, bytes, pastiche_core::wire::DropNotice::DECOMMISSIONED, now)?;
                log(&format!(
                    "client {} ({}) silent for {silent_days} days: decommissioned, its {bytes} bytes released (prune reclaims them)",
                    c.key,
                    display_name(&c)
                ));
                released.push(Released { client: c, bytes });
            }
            Standing::Decommissioned => {}
        }
    }
    Ok(released)
}

fn holds_anything(c: &ClientInfo) -> bool {
    c.record.used_bytes > 0 || c.record.committed_epoch > 0 || c.record.staged_epoch > 0
}

fn display_name(c: &ClientInfo) -> &str {
    if c.name.is_empty() {
        "unnamed"
    } else {
        &c.name
    }
}

/// Health alerts for the clients of this buddy: a warning for each one
/// silent for half the grace period, and for each decommissioned one still
/// holding data (released at the daemon's next sweep).
pub fn alerts(clients: &[ClientInfo], grace: Grace, now: u64) -> Vec<Alert> {
    let mut out = Vec::new();
    for c in clients {
        let silent_days = now.saturating_sub(c.last_seen) / DAY;
        let message = match grace.standing(c.last_seen, now) {
            Standing::Active => continue,
            Standing::Silent { release_at } => format!(
                "client {} ({}) has been silent for {silent_days} days: its data is released in {} days",
                &c.key.to_string()[..16],
                display_name(c),
                release_at.saturating_sub(now).div_ceil(DAY)
            ),
            Standing::Decommissioned if holds_anything(c) => format!(
                "client {} ({}) has been silent for {silent_days} days: decommissioned, its data is being released",
                &c.key.to_string()[..16],
                display_name(c)
            ),
            Standing::Decommissioned => continue,
        };
        out.push(Alert { severity: Verdict::Warning, code: "client_silent".into(), message });
    }
    out
}

/// Starts the daemon's sweeper: once at start, then every hour, until
/// `stopped` says so.
pub fn spawn(
    storage: BuddyStorage,
    grace: impl Fn() -> Grace + Send + 'static,
    log: super::LogSink,
    stopped: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::time::{Duration, Instant};
    std::thread::Builder::new().name("pastiche-clients".into()).spawn(move || loop {
        if let Err(e) = sweep(&storage, grace(), &*log) {
            log(&format!("client sweep failed: {e:#}"));
        }
        let next = Instant::now() + Duration::from_secs(3600);
        while Instant::now() < next {
            if stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_over_the_grace_period() {
        let g = Grace::days(90);
        assert_eq!(g.standing(0, 44 * DAY), Standing::Active);
        assert_eq!(g.standing(0, 45 * DAY), Standing::Silent { release_at: 90 * DAY });
        assert_eq!(g.standing(0, 90 * DAY - 1), Standing::Silent { release_at: 90 * DAY });
        assert_eq!(g.standing(0, 90 * DAY), Standing::Decommissioned);
        assert_eq!(g.standing(10 * DAY, 5 * DAY), Standing::Active, "a clock behind is no silence");
        assert_eq!(Grace::days(0).standing(0, 1000 * DAY), Standing::Active, "0: never");
    }
}
