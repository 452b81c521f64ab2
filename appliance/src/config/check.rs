//! `[check]`: the daemon's own periodic check of the local store, and the
//! repair from buddies that follows a failed one (see [`crate::repair`]).
//!
//! ```toml
//! [check]
//! enabled = true
//! interval_seconds = 86400       # one local check a day
//! read_data_percent = 2.0        # chunks opened end to end by each check (the index is always checked whole)
//! repair = true                  # after a failed check, repair from the buddies
//! ```

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `[check]`, every default filled in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckConfig {
    /// Whether the daemon checks its store on its own.
    pub enabled: bool,
    /// Seconds between two checks.
    pub interval_seconds: u64,
    /// Share of the chunks each check reads and opens, 0..=100 (a fresh
    /// random sample each time, so a month of daily 2% checks reads about
    /// half the store).
    pub read_data_percent: f64,
    /// Whether a failed check is followed by a repair from the buddies.
    pub repair: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig { enabled: true, interval_seconds: 86_400, read_data_percent: 2.0, repair: true }
    }
}

/// `[check]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    enabled: Option<bool>,
    interval_seconds: Option<Spanned<u64>>,
    read_data_percent: Option<Spanned<f64>>,
    repair: Option<bool>,
}

use super::{at_least_one, percent, Fail};

impl RawCheck {
    /// Checks the section; `fail` makes an error at a span.
    pub(super) fn parse(self, fail: Fail<'_>) -> Result<CheckConfig, super::ConfigError> {
        let mut c = CheckConfig::default();
        if let Some(e) = self.enabled {
            c.enabled = e;
        }
        if let Some(r) = self.repair {
            c.repair = r;
        }
        if let Some(i) = self.interval_seconds {
            c.interval_seconds = at_least_one(i, "interval_seconds", fail)?;
        }
        if let Some(p) = self.read_data_percent {
            c.read_data_percent = percent(p, "read_data_percent", fail)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn the_check_section() {
        assert_eq!(parse("").unwrap().check, CheckConfig::default());
        let c = parse("[check]\ninterval_seconds = 60\nread_data_percent = 100.0\nrepair = false\n").unwrap();
        assert_eq!(
            c.check,
            CheckConfig { enabled: true, interval_seconds: 60, read_data_percent: 100.0, repair: false }
        );
        assert_eq!(parse(&c.to_toml()).unwrap().check, c.check, "what `pastiche config` shows parses back");
        assert!(parse("[check]\ninterval_seconds = 0\n").is_err());
        assert!(parse("[check]\nread_data_percent = 101.0\n").is_err());
        assert!(parse("[check]\nbogus = 1\n").is_err());
    }
}
