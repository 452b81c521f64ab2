//! The daemon's configuration: one TOML file, `DATA/pastiche.toml` (or
//! `--config FILE`), documented in `docs/CONFIG.md`.
//!
//! ```toml
//! buddies = ["nas2.lan:7467"]      # where new snapshots are shipped
//!
//! [backup]
//! paths = ["/srv/photos", "/home"] # absolute
//! exclude = ["*.tmp", "/home/*/.cache"]
//! one_file_system = false
//! schedule = "daily 02:30"          # hourly | daily HH:MM | weekly | every 15m | never | cron
//!
//! [keep]                            # retention, as forget --keep-*
//! last = 7
//! daily = 14
//!
//! [prune]
//! schedule = "daily 04:00"          # forget by [keep], then prune
//!
//! [serve]
//! listen = ["0.0.0.0:7467"]
//! quota = "64 GiB"                  # each client's, unless listed below
//! max_sessions = 32
//! min_free = "1 GiB"                # free disk kept for this box's own backups
//! client_grace_days = 90            # a client silent this long is decommissioned (0: never)
//! group_work_per_sec = "128 MiB"    # work clients may cost reading this box's own grouped chunks
//! [serve.client_quotas]
//! "<client public key, 64 hex digits>" = "200 GiB"
//!
//! [http]                            # the status page, JSON API and /metrics
//! listen = "127.0.0.1:8484"         # "0.0.0.0:8484" for the LAN (login needed), "off"
//! session_minutes = 60              # how long a login lasts
//!
//! [alerts]                          # when the status page and `pastiche status` warn
//! backup_age_factor = 2.0           # no backup for this many schedule intervals
//! buddy_stale_hours = 72            # a buddy not synced for this long
//! sync_failures = 3                 # syncs in a row failing to one buddy
//! disk_floor = "1 GiB"              # free space below this is critical
//! probe_seconds = 60                # how often each buddy is asked whether it answers
//!
//! [audit]                           # see `config/audit.rs`
//! interval_seconds = 3600           # audits of every buddy
//!
//! [check]                           # see `config/check.rs`
//! interval_seconds = 86400          # local checks (and repairs after a failed one)
//! ```
//!
//! A missing file means the defaults (serve on port 7467, no scheduled
//! job). A bad file is refused whole, with the line and the reason.

pub mod audit;
pub mod check;
pub mod live;
pub mod overlay;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::buddy::{DEFAULT_MAX_SESSIONS, DEFAULT_PORT, DEFAULT_QUOTA};
use crate::retention::KeepPolicy;
pub use live::LiveConfig;
pub use schedule::Schedule;

/// The configuration file's name in the data directory.
pub const CONFIG_FILE: &str = "pastiche.toml";
/// The backup schedule when paths are given but no schedule.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "daily 02:30";
/// The prune schedule when a keep policy is given but no schedule.
pub const DEFAULT_PRUNE_SCHEDULE: &str = "daily 04:00";

/// The effective configuration (every default filled in).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The file it was read from, if one exists.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Buddies new snapshots are shipped to (added to the buddy list).
    pub buddies: Vec<String>,
    /// Scheduled backups.
    pub backup: BackupConfig,
    /// The retention policy applied before each scheduled prune.
    pub keep: KeepPolicy,
    /// Scheduled retention and prune.
    pub prune: PruneConfig,
    /// Serving buddies.
    pub serve: ServeConfig,
    /// The status page.
    pub http: HttpConfig,
    /// When to warn.
    pub alerts: AlertsConfig,
    /// The LAN beacon, the overlays, discovery and pairing.
    pub overlay: overlay::OverlayConfig,
    /// Audits of the buddies, and the audit budget of clients.
    pub audit: audit::AuditConfig,
    /// The daemon's local checks and the repairs after them.
    pub check: check::CheckConfig,
}

/// The status page's default address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8484";

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpConfig {
    /// Where the status page listens (`None`: off).
    #[serde(serialize_with = "listen_or_off")]
    pub listen: Option<SocketAddr>,
    /// How long a login lasts, in minutes.
    pub session_minutes: u64,
}

/// `[alerts]`: the thresholds of [`crate::health`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertsConfig {
    /// No successful backup for this many schedule intervals is critical.
    pub backup_age_factor: f64,
    /// A buddy not synced for this many hours is a warning.
    pub buddy_stale_hours: u64,
    /// This many failed syncs in a row to one buddy is a warning.
    pub sync_failures: u32,
    /// Free bytes below this on the box's disk is critical.
    pub disk_floor: u64,
    /// Seconds between two probes of each buddy.
    pub probe_seconds: u64,
}

/// Writes an optional address as the file has it: the address or `"off"`.
fn listen_or_off<S: serde::Serializer>(listen: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match listen {
        Some(a) => s.collect_str(a),
        None => s.serialize_str("off"),
    }
}

impl AlertsConfig {
    /// The thresholds [`crate::health::assess`] takes.
    pub fn thresholds(&self) -> crate::health::Thresholds {
        crate::health::Thresholds {
            backup_age_factor: self.backup_age_factor,
            buddy_stale: std::time::Duration::from_secs(self.buddy_stale_hours.saturating_mul(3600)),
            sync_failures: self.sync_failures,
            disk_floor: self.disk_floor,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        let t = crate::health::Thresholds::default();
        AlertsConfig {
            backup_age_factor: t.backup_age_factor,
            buddy_stale_hours: t.buddy_stale.as_secs() / 3600,
            sync_failures: t.sync_failures,
            disk_floor: t.disk_floor,
            probe_seconds: 60,
        }
    }
}

/// `[backup]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupConfig {
    /// What to back up (absolute paths).
    pub paths: Vec<PathBuf>,
    /// Exclude patterns, as `backup --exclude`.
    pub exclude: Vec<String>,
    /// Stay on each path's file system.
    pub one_file_system: bool,
    /// When.
    pub schedule: Schedule,
}

/// `[prune]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PruneConfig {
    /// When to apply `[keep]` and prune.
    pub schedule: Schedule,
}

/// `[serve]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServeConfig {
    /// Addresses the buddy server listens on.
    pub listen: Vec<SocketAddr>,
    /// Bytes each client may store unless listed in `client_quotas`.
    pub quota: u64,
    /// Clients served at once (per address).
    pub max_sessions: usize,
    /// Free disk bytes kept for the box's own backups: clients' uploads
    /// cannot take the disk below it.
    pub min_free: u64,
    /// Quotas of particular clients, by public key (hex).
    pub client_quotas: BTreeMap<String, u64>,
    /// Days a client may stay silent before its data is released (warned
    /// at half; 0: never).
    pub client_grace_days: u64,
    /// Work bytes per second (groups opened, chunks sealed) all clients
    /// together may cost the box when they read chunks it keeps in its
    /// own compressed groups ([`crate::buddy::throttle`]).
    pub group_work_per_sec: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            source: None,
            buddies: Vec::new(),
            backup: BackupConfig {
                paths: Vec::new(),
                exclude: Vec::new(),
                one_file_system: false,
                schedule: Schedule::Never,
            },
            keep: KeepPolicy::default(),
            prune: PruneConfig { schedule: Schedule::Never },
            serve: ServeConfig {
                listen: vec![SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))],
                quota: DEFAULT_QUOTA,
                max_sessions: DEFAULT_MAX_SESSIONS,
                min_free: crate::buddy::DEFAULT_MIN_FREE,
                client_quotas: BTreeMap::new(),
                client_grace_days: crate::buddy::lifecycle::DEFAULT_GRACE_DAYS,
                group_work_per_sec: crate::buddy::throttle::DEFAULT_WORK_PER_SEC,
            },
            http: HttpConfig { listen: DEFAULT_HTTP_LISTEN.parse().ok(), session_minutes: 60 },
            alerts: AlertsConfig::default(),
            overlay: overlay::OverlayConfig::default(),
            audit: audit::AuditConfig::default(),
            check: check::CheckConfig::default(),
        }
    }
}

/// How a section's parser makes an error at a span of the file.
pub(super) type Fail<'a> = &'a dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError;

/// The value of `key`, refused unless it is at least 1.
pub(super) fn at_least_one<T: PartialOrd + From<u8>>(
    v: Spanned<T>,
    key: &str,
    fail: Fail<'_>,
) -> Result<T, ConfigError> {
    if *v.get_ref() < T::from(1) {
        return Err(fail(Some(v.span()), format!("{key} must be at least 1")));
    }
    Ok(v.into_inner())
}

/// The value of `key`, refused unless it is a percentage (0 to 100).
pub(super) fn percent(v: Spanned<f64>, key: &str, fail: Fail<'_>) -> Result<f64, ConfigError> {
    if !(0.0..=100.0).contains(v.get_ref()) {
        return Err(fail(Some(v.span()), format!("{key} must be between 0 and 100")));
    }
    Ok(v.into_inner())
}

/// Why a configuration file was refused: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, when the mistake has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    buddies: Vec<Spanned<String>>,
    #[serde(default)]
    backup: RawBackup,
    #[serde(default)]
    keep: KeepPolicy,
    #[serde(default)]
    prune: RawPrune,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    overlay: overlay::RawOverlay,
    #[serde(default)]
    audit: audit::RawAudit,
    #[serde(default)]
    check: check::RawCheck,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    session_minutes: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    backup_age_factor: Option<Spanned<f64>>,
    buddy_stale_hours: Option<u64>,
    sync_failures: Option<u32>,
    disk_floor: Option<Spanned<Size>>,
    probe_seconds: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    #[serde(default)]
    paths: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    one_file_system: bool,
    schedule: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrune {
    schedule: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServe {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    quota: Option<Spanned<Size>>,
    max_sessions: Option<Spanned<usize>>,
    min_free: Option<Spanned<Size>>,
    #[serde(default)]
    client_quotas: BTreeMap<Spanned<String>, Spanned<Size>>,
    client_grace_days: Option<u64>,
    group_work_per_sec: Option<Spanned<Size>>,
}

/// A byte count: a number, or a string like `"64 GiB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// Parses `"64 GiB"`, `"500MB"`, `"1024"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 =
        num.parse().map_err(|_| format!("bad size {text:?}: use bytes or a number and a unit, like \"64 GiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => return Err(format!("bad size unit {u:?} in {text:?}: use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")),
    };
    num.checked_mul(mult).ok_or_else(|| format!("size {text:?} is too large"))
}

impl Config {
    /// The configuration file of the box in `data`.
    pub fn default_path(data: &Path) -> PathBuf {
        data.join(CONFIG_FILE)
    }

    /// Reads `path`; a missing file gives the defaults unless `required`
    /// (a file named with `--config` must exist).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
            Err(e) => Err(ConfigError { path: path.to_path_buf(), line: None, reason: format!("cannot read it: {e}") }),
        }
    }

    /// Parses and checks a configuration file's text (`path` names it in
    /// errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |span: Option<std::ops::Range<usize>>, reason: String| ConfigError {
            path: path.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(e.span(), e.message().trim().to_string()))?;
        let mut c = Config { source: Some(path.to_path_buf()), ..Config::default() };

        for b in raw.buddies {
            let ok = b.get_ref().rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(fail(Some(b.span()), format!("buddy {:?} is not HOST:PORT", b.get_ref())));
            }
            c.buddies.push(b.into_inner());
        }

        for p in raw.backup.paths {
            if !p.get_ref().is_absolute() {
                return Err(fail(Some(p.span()), format!("backup path {:?} is not absolute", p.get_ref())));
            }
            c.backup.paths.push(p.into_inner());
        }
        for e in raw.backup.exclude {
            if e.get_ref().is_empty() {
                return Err(fail(Some(e.span()), "an exclude pattern is empty".into()));
            }
            if let Err(bad) = crate::backup::exclude::Excludes::new(std::slice::from_ref(e.get_ref())) {
                return Err(fail(Some(e.span()), bad.to_string()));
            }
            c.backup.exclude.push(e.into_inner());
        }
        c.backup.one_file_system = raw.backup.one_file_system;
        c.backup.schedule = match raw.backup.schedule {
            Some(s) => s.get_ref().parse().map_err(|why| fail(Some(s.span()), why))?,
            None if c.backup.paths.is_empty() => Schedule::Never,
            None => DEFAULT_BACKUP_SCHEDULE.parse().expect("a valid default"),
        };
        if c.backup.paths.is_empty() && c.backup.schedule != Schedule::Never {
            return Err(fail(None, "[backup] has a schedule but no paths to back up".into()));
        }

        c.keep = raw.keep;
        c.prune.schedule = match raw.prune.schedule {
            Some(s) => s.get_ref().parse().map_err(|why| fail(Some(s.span()), why))?,
            None if c.keep.is_empty() => Schedule::Never,
            None => DEFAULT_PRUNE_SCHEDULE.parse().expect("a valid default"),
        };

        if !raw.serve.listen.is_empty() {
            c.serve.listen.clear();
        }
        for l in raw.serve.listen {
            let addr = l
                .get_ref()
                .parse()
                .map_err(|_| fail(Some(l.span()), format!("listen address {:?} is not IP:PORT", l.get_ref())))?;
            c.serve.listen.push(addr);
        }
        let size = |s: Spanned<Size>| -> Result<u64, ConfigError> {
            let span = s.span();
            match s.into_inner() {
                Size::Bytes(n) => Ok(n),
                Size::Text(t) => parse_size(&t).map_err(|why| fail(Some(span), why)),
            }
        };
        if let Some(q) = raw.serve.quota {
            c.serve.quota = size(q)?;
        }
        if let Some(f) = raw.serve.min_free {
            c.serve.min_free = size(f)?;
        }
        if let Some(m) = raw.serve.max_sessions {
            if *m.get_ref() == 0 {
                return Err(fail(Some(m.span()), "max_sessions must be at least 1".into()));
            }
            c.serve.max_sessions = m.into_inner();
        }
        if let Some(w) = raw.serve.group_work_per_sec {
            let span = w.span();
            let rate = size(w)?;
            if rate < crate::buddy::throttle::MIN_WORK_PER_SEC {
                return Err(fail(
                    Some(span),
                    format!(
                        "group_work_per_sec must be at least {} bytes (1 MiB): opening one group costs about that much",
                        crate::buddy::throttle::MIN_WORK_PER_SEC
                    ),
                ));
            }
            c.serve.group_work_per_sec = rate;
        }
        if let Some(days) = raw.serve.client_grace_days {
            c.serve.client_grace_days = days;
        }
        for (key, q) in raw.serve.client_quotas {
            if key.get_ref().parse::<pastiche_core::PublicKey>().is_err() {
                return Err(fail(Some(key.span()), format!("{:?} is not a public key (64 hex digits)", key.get_ref())));
            }
            c.serve.client_quotas.insert(key.into_inner(), size(q)?);
        }

        if let Some(l) = raw.http.listen {
            c.http.listen = match l.get_ref().as_str() {
                "off" => None,
                text => Some(text.parse().map_err(|_| {
                    fail(Some(l.span()), format!("http listen address {text:?} is not IP:PORT or \"off\""))
                })?),
            };
        }
        if let Some(m) = raw.http.session_minutes {
            if *m.get_ref() == 0 {
                return Err(fail(Some(m.span()), "session_minutes must be at least 1".into()));
            }
            c.http.session_minutes = m.into_inner();
        }
        if let Some(f) = raw.alerts.backup_age_factor {
            if !(f.get_ref().is_finite() && *f.get_ref() >= 1.0) {
                return Err(fail(Some(f.span()), "backup_age_factor must be at least 1".into()));
            }
            c.alerts.backup_age_factor = f.into_inner();
        }
        if let Some(h) = raw.alerts.buddy_stale_hours {
            c.alerts.buddy_stale_hours = h;
        }
        if let Some(n) = raw.alerts.sync_failures {
            c.alerts.sync_failures = n.max(1);
        }
        if let Some(d) = raw.alerts.disk_floor {
            c.alerts.disk_floor = size(d)?;
        }
        if let Some(p) = raw.alerts.probe_seconds {
            if *p.get_ref() == 0 {
                return Err(fail(Some(p.span()), "probe_seconds must be at least 1".into()));
            }
            c.alerts.probe_seconds = p.into_inner();
        }
        c.overlay = raw.overlay.parse(&fail)?;
        c.audit = raw.audit.parse(&fail)?;
        c.check = raw.check.parse(&fail)?;
        Ok(c)
    }

    /// The effective configuration as TOML (what `pastiche config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serializes")
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as `pastiche.toml` (the section modules' tests use it too).
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("pastiche.toml"))
    }

    #[test]
    fn a_full_file() {
        let key = "ab".repeat(32);
        let c = parse(&format!(
            r#"
buddies = ["nas2.lan:7467", "[::1]:7000"]
[backup]
paths = ["/srv/a", "/home"]
exclude = ["*.tmp"]
schedule = "every 90s"
[keep]
last = 3
daily = 7
[serve]
listen = ["127.0.0.1:7467", "[::1]:7467"]
quota = "2 GiB"
max_sessions = 4
[serve.client_quotas]
"{key}" = 1000
[http]
listen = "0.0.0.0:8080"
[alerts]
buddy_stale_hours = 24
disk_floor = "5 GiB"
"#
        ))
        .unwrap();
        assert_eq!(c.buddies, ["nas2.lan:7467", "[::1]:7000"]);
        assert_eq!(c.backup.paths, [PathBuf::from("/srv/a"), PathBuf::from("/home")]);
        assert_eq!(c.backup.schedule, Schedule::Every(std::time::Duration::from_secs(90)));
        assert_eq!(c.keep, KeepPolicy { last: Some(3), daily: Some(7), ..KeepPolicy::default() });
        assert_eq!(c.prune.schedule.to_string(), DEFAULT_PRUNE_SCHEDULE);
        assert_eq!(c.serve.listen.len(), 2);
        assert_eq!(c.serve.quota, 2 << 30);
        assert_eq!(c.serve.client_quotas[&key], 1000);
        assert_eq!(c.http.listen, Some(SocketAddr::from(([0, 0, 0, 0], 8080))));
        assert_eq!(c.alerts.thresholds().buddy_stale.as_secs(), 24 * 3600);
        assert_eq!(c.alerts.disk_floor, 5 << 30);
        // What `pastiche config` shows parses back to the same configuration.
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(Config { source: None, ..again }, Config { source: None, ..c });
    }

    #[test]
    fn the_work_clients_may_cost_is_a_rate_of_at_least_one_mebibyte() {
        assert_eq!(parse("").unwrap().serve.group_work_per_sec, crate::buddy::throttle::DEFAULT_WORK_PER_SEC);
        let c = parse("[serve]\ngroup_work_per_sec = \"32 MiB\"\n").unwrap();
        assert_eq!(c.serve.group_work_per_sec, 32 << 20);
        assert_eq!(parse(&c.to_toml()).unwrap().serve, c.serve);
        let err = parse("[serve]\ngroup_work_per_sec = 1000\n").unwrap_err().to_string();
        assert!(err.contains("group_work_per_sec must be at least 1048576 bytes (1 MiB)"), "{err}");
    }

    #[test]
    fn the_status_page_can_be_off_and_that_survives_a_round_trip() {
        let c = parse("[http]\nlisten = \"off\"\nsession_minutes = 5\n").unwrap();
        assert_eq!((c.http.listen, c.http.session_minutes), (None, 5));
        assert_eq!(parse(&c.to_toml()).unwrap().http, c.http);
        assert_eq!(parse("").unwrap().http.listen, DEFAULT_HTTP_LISTEN.parse().ok());
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.backup.schedule, Schedule::Never);
        assert_eq!(c.prune.schedule, Schedule::Never);
        assert_eq!(c.serve.listen, [SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))]);
        let c = parse("[backup]\npaths = [\"/x\"]\n").unwrap();
        assert_eq!(c.backup.schedule.to_string(), DEFAULT_BACKUP_SCHEDULE);
    }

    #[test]
    fn mistakes_are_refused_with_line_and_reason() {
        for (text, line, why) in [
            ("[backup]\npaths = [\"/x\"]\nschedule = \"daily 25:00\"\n", Some(3), "bad time"),
            ("[backup]\npaths = [\"relative/dir\"]\n", Some(2), "not absolute"),
            ("\n\n[backup]\npathz = [\"/x\"]\n", Some(4), "unknown field `pathz`"),
            ("[serve]\nlisten = [\"localhost\"]\n", Some(2), "not IP:PORT"),
            ("[serve]\n\nquota = \"12 parsecs\"\n", Some(3), "bad size unit"),
            ("buddies = [\"nas2\"]\n", Some(1), "not HOST:PORT"),
            ("[keep]\nlast = \"seven\"\n", Some(2), "invalid type"),
            ("[backup\n", Some(1), ""),
            ("[backup]\nschedule = \"hourly\"\n", None, "no paths"),
            ("[serve.client_quotas]\n\"abc\" = 5\n", Some(2), "not a public key"),
            ("[http]\nlisten = \"everywhere\"\n", Some(2), "not IP:PORT"),
            ("[alerts]\nbackup_age_factor = 0.5\n", Some(2), "at least 1"),
            ("[backup]\npaths = [\"/x\"]\nexclude = [\"*.tmp\",\n  \"[oops\"]\n", Some(4), "bad exclude pattern"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.reason.contains(why), "{text:?}: {err}");
            if let Some(l) = line {
                assert!(err.to_string().starts_with(&format!("pastiche.toml line {l}: ")), "{err}");
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64 GiB"), Ok(64 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999 TiB").is_err());
    }
}
