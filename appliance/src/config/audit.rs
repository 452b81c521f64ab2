//! `[audit]`: how the daemon audits its buddies (the client side, see
//! [`crate::audit`]) and how much audit work each client may cost it as a
//! buddy.
//!
//! ```toml
//! [audit]
//! enabled = true
//! interval_seconds = 3600        # one audit of every buddy an hour
//! samples = 4                    # chunks challenged per audit (default: enough to catch
//!                                #   a buddy that lost 5% within a day with 99% probability)
//! fetches = 1                    # chunks fetched whole per audit (default: by the monthly budget)
//! monthly_fetch_percent = 1.0    # whole-chunk fetches, as a share of the bytes stored, a month
//! buddy_reads_per_hour = 4096    # as a buddy: chunk reads each client's audits may cost an hour
//! ```

use pastiche_core::audit::{AuditPlan, MAX_AUDIT_IDS};
use pastiche_core::session::DEFAULT_AUDIT_READS_PER_WINDOW;
use serde::{Deserialize, Serialize};
use toml::Spanned;

const DAY: u64 = 86_400;

/// `[audit]`, every default filled in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditConfig {
    /// Whether the daemon audits its buddies on its own.
    pub enabled: bool,
    /// Seconds between two audits of every buddy.
    pub interval_seconds: u64,
    /// Chunks challenged for a proof in each audit.
    pub samples: u32,
    /// Chunks fetched whole in each audit; absent: as many as
    /// `monthly_fetch_percent` allows, spread over the month's audits.
    pub fetches: Option<u32>,
    /// Whole-chunk fetches a month, as a percentage of the bytes stored on a buddy.
    pub monthly_fetch_percent: f64,
    /// As a buddy: chunk reads each client's audits may cost an hour.
    pub buddy_reads_per_hour: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let interval_seconds = 3600;
        AuditConfig {
            enabled: true,
            interval_seconds,
            samples: plan(interval_seconds, 1.0).challenges_per_audit(u64::MAX),
            fetches: None,
            monthly_fetch_percent: 1.0,
            buddy_reads_per_hour: DEFAULT_AUDIT_READS_PER_WINDOW,
        }
    }
}

/// The audit plan of an interval and a fetch budget (the rest: the
/// defaults, 5% lost caught with 99% probability within a day).
fn plan(interval_seconds: u64, monthly_fetch_percent: f64) -> AuditPlan {
    let interval = interval_seconds.max(1);
    AuditPlan {
        within_secs: DAY.max(interval),
        audits_per_period: (DAY.max(interval) / interval) as u32,
        fetch_budget_ppm: (monthly_fetch_percent * 10_000.0) as u64,
        ..AuditPlan::default()
    }
}

impl AuditConfig {
    /// The plan the daemon's audits follow.
    pub fn plan(&self) -> AuditPlan {
        plan(self.interval_seconds, self.monthly_fetch_percent)
    }
}

/// `[audit]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    enabled: Option<bool>,
    interval_seconds: Option<Spanned<u64>>,
    samples: Option<Spanned<u32>>,
    fetches: Option<Spanned<u32>>,
    monthly_fetch_percent: Option<Spanned<f64>>,
    buddy_reads_per_hour: Option<Spanned<u32>>,
}

use super::{at_least_one, percent, Fail};

impl RawAudit {
    /// Checks the section; `fail` makes an error at a span.
    pub(super) fn parse(self, fail: Fail<'_>) -> Result<AuditConfig, super::ConfigError> {
        let mut c = AuditConfig::default();
        if let Some(e) = self.enabled {
            c.enabled = e;
        }
        if let Some(i) = self.interval_seconds {
            c.interval_seconds = at_least_one(i, "interval_seconds", fail)?;
        }
        if let Some(p) = self.monthly_fetch_percent {
            c.monthly_fetch_percent = percent(p, "monthly_fetch_percent", fail)?;
        }
        c.samples = match self.samples {
            Some(s) => s.into_inner(),
            None => c.plan().challenges_per_audit(u64::MAX),
        };
        c.fetches = self.fetches.map(Spanned::into_inner);
        if let Some(r) = self.buddy_reads_per_hour {
            if (*r.get_ref() as usize) < MAX_AUDIT_IDS {
                let why = format!("buddy_reads_per_hour must be at least {MAX_AUDIT_IDS} (one full audit request)");
                return Err(fail(Some(r.span()), why));
            }
            c.buddy_reads_per_hour = r.into_inner();
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn the_audit_section() {
        let d = parse("").unwrap().audit;
        assert_eq!(d, AuditConfig::default());
        assert_eq!((d.interval_seconds, d.samples, d.fetches), (3600, 4, None), "90 proofs a day, hourly");
        let c = parse(
            "[audit]\ninterval_seconds = 600\nfetches = 2\nmonthly_fetch_percent = 0.5\nbuddy_reads_per_hour = 512\n",
        )
        .unwrap()
        .audit;
        assert_eq!((c.interval_seconds, c.samples, c.fetches), (600, 1, Some(2)), "144 audits a day share 90 proofs");
        assert_eq!(c.plan().fetch_budget_ppm, 5_000);
        assert_eq!(c.buddy_reads_per_hour, 512);
        assert_eq!(parse("[audit]\nsamples = 30\n").unwrap().audit.samples, 30);
        let shown = parse("[audit]\nsamples = 30\n").unwrap().to_toml();
        assert!(shown.contains("[audit]") && shown.contains("samples = 30"), "{shown}");
        assert!(parse("[audit]\ninterval_seconds = 0\n").is_err());
        assert!(parse("[audit]\nmonthly_fetch_percent = 150.0\n").is_err());
        assert!(parse("[audit]\nbuddy_reads_per_hour = 10\n").is_err());
        assert!(parse("[audit]\nbogus = 1\n").is_err());
    }
}
