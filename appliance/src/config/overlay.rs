//! `[overlay]`: the LAN beacon, the two Pastry overlays, discovery and
//! pairing (`docs/CONFIG.md`, `[overlay]`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use pastiche_core::wire::beacon::BEACON_PORT;

/// Buddies the daemon keeps unless configured otherwise.
pub const DEFAULT_KEEP_BUDDIES: usize = 2;
/// The shortest pairing secret accepted.
pub const MIN_SECRET_LEN: usize = 8;
/// A buddy silent this long is replaced unless configured otherwise (seconds).
pub const DEFAULT_REPLACE_AFTER: u64 = 14 * 86_400;
/// Failed audits in a row (with the buddy answering) that get it replaced.
pub const DEFAULT_REPLACE_AFTER_FAILURES: u32 = 3;

/// How the daemon answers a box asking to pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pairing {
    /// Requests wait for the owner (`pastiche buddy accept ID`).
    Manual,
    /// A request proving the same `pairing_secret` is accepted at once;
    /// any other waits for the owner.
    Auto,
}

/// `[overlay]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverlayConfig {
    /// Whether the daemon runs the beacon and the overlays at all.
    pub enabled: bool,
    /// The UDP socket of the beacon and both overlays.
    pub listen: SocketAddr,
    /// Where beacons are sent (broadcast addresses); empty: no beacon.
    pub beacon_to: Vec<SocketAddr>,
    /// Overlay nodes to join through (`HOST:PORT`, UDP) besides the LAN.
    pub seeds: Vec<String>,
    /// Buddies the daemon keeps (typed ones count); 0: it never asks.
    pub buddies: usize,
    /// Least share of this box's fingerprint a buddy must hold (0 to 1).
    pub min_coverage: f64,
    /// Seconds between two discovery rounds.
    pub discovery_seconds: u64,
    /// Manual or automatic pairing.
    pub pairing: Pairing,
    /// The office's shared secret for automatic pairing (never shown).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hidden")]
    pub pairing_secret: Option<String>,
    /// A buddy neither seen on the LAN or the overlay nor audited for this
    /// many seconds is replaced (shown as `"Ns"`, as the file writes it).
    #[serde(serialize_with = "seconds_text")]
    pub replace_after: u64,
    /// A buddy failing this many audits in a row (answering, but without
    /// the data) is replaced.
    pub replace_after_failures: u32,
    /// Buddies to take, in order, before asking discovered boxes, when one
    /// is replaced: `HOST:PORT` (a box that admits this one already) or
    /// `CODE@HOST:PORT` (with a code its owner made by `buddy invite`).
    pub spares: Vec<String>,
}

/// A number of seconds the way the file writes durations (`"1209600s"`), so
/// that what `pastiche config` shows parses back.
fn seconds_text<S: serde::Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{secs}s"))
}

fn hidden<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_some() { "(set)" } else { "" })
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], BEACON_PORT)),
            beacon_to: vec![SocketAddr::from(([255, 255, 255, 255], BEACON_PORT))],
            seeds: Vec::new(),
            buddies: DEFAULT_KEEP_BUDDIES,
            min_coverage: 0.0,
            discovery_seconds: 60,
            pairing: Pairing::Manual,
            pairing_secret: None,
            replace_after: DEFAULT_REPLACE_AFTER,
            replace_after_failures: DEFAULT_REPLACE_AFTER_FAILURES,
            spares: Vec::new(),
        }
    }
}

/// `[overlay]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverlay {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    beacon_to: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    seeds: Vec<Spanned<String>>,
    buddies: Option<Spanned<usize>>,
    min_coverage: Option<Spanned<f64>>,
    discovery_seconds: Option<Spanned<u64>>,
    pairing: Option<Spanned<String>>,
    pairing_secret: Option<Spanned<String>>,
    replace_after: Option<Spanned<String>>,
    replace_after_failures: Option<Spanned<u32>>,
    #[serde(default)]
    spares: Vec<Spanned<String>>,
}

use super::{at_least_one, Fail};

impl RawOverlay {
    /// Checks the section; `fail` makes an error at a span.
    pub(super) fn parse(self, fail: Fail<'_>) -> Result<OverlayConfig, super::ConfigError> {
        let mut c = OverlayConfig::default();
        if let Some(e) = self.enabled {
            c.enabled = e;
        }
        let addr = |s: &Spanned<String>, what: &str| -> Result<SocketAddr, super::ConfigError> {
            s.get_ref().parse().map_err(|_| fail(Some(s.span()), format!("{what} {:?} is not IP:PORT", s.get_ref())))
        };
        if let Some(l) = &self.listen {
            c.listen = addr(l, "overlay listen address")?;
        }
        if let Some(list) = &self.beacon_to {
            c.beacon_to = list.iter().map(|b| addr(b, "beacon address")).collect::<Result<_, _>>()?;
        }
        let host_port = |s: &str| s.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        for s in self.seeds {
            if !host_port(s.get_ref()) {
                return Err(fail(Some(s.span()), format!("seed {:?} is not HOST:PORT", s.get_ref())));
            }
            c.seeds.push(s.into_inner());
        }
        for s in self.spares {
            let addr = s.get_ref().rsplit_once('@').map_or(s.get_ref().as_str(), |(_, a)| a);
            if !host_port(addr) {
                return Err(fail(
                    Some(s.span()),
                    format!("spare {:?} is not HOST:PORT or CODE@HOST:PORT", s.get_ref()),
                ));
            }
            c.spares.push(s.into_inner());
        }
        if let Some(r) = &self.replace_after {
            c.replace_after = crate::cli::clientscmd::parse_duration(r.get_ref())
                .map_err(|e| fail(Some(r.span()), format!("replace_after: {e}")))?;
        }
        if let Some(n) = self.replace_after_failures {
            c.replace_after_failures = at_least_one(n, "replace_after_failures", fail)?;
        }
        if let Some(k) = self.buddies {
            if *k.get_ref() > pastiche_core::discovery::MAX_BUDDIES {
                let max = pastiche_core::discovery::MAX_BUDDIES;
                return Err(fail(Some(k.span()), format!("buddies must be at most {max}")));
            }
            c.buddies = k.into_inner();
        }
        if let Some(m) = self.min_coverage {
            if !(0.0..=1.0).contains(m.get_ref()) {
                return Err(fail(Some(m.span()), "min_coverage must be between 0 and 1".into()));
            }
            c.min_coverage = m.into_inner();
        }
        if let Some(d) = self.discovery_seconds {
            c.discovery_seconds = at_least_one(d, "discovery_seconds", fail)?;
        }
        if let Some(p) = &self.pairing {
            c.pairing = match p.get_ref().as_str() {
                "manual" => Pairing::Manual,
                "auto" => Pairing::Auto,
                other => return Err(fail(Some(p.span()), format!("pairing {other:?} is not \"manual\" or \"auto\""))),
            };
        }
        if let Some(s) = self.pairing_secret {
            if s.get_ref().chars().count() < MIN_SECRET_LEN {
                let why = format!("pairing_secret must have at least {MIN_SECRET_LEN} characters");
                return Err(fail(Some(s.span()), why));
            }
            c.pairing_secret = Some(s.into_inner());
        }
        if c.pairing == Pairing::Auto && c.pairing_secret.is_none() {
            let span = self.pairing.as_ref().map(|p| p.span());
            return Err(fail(span, "pairing = \"auto\" needs a pairing_secret".into()));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn the_overlay_section() {
        assert_eq!(parse("").unwrap().overlay, OverlayConfig::default());
        let c = parse(
            "[overlay]\nlisten = \"0.0.0.0:9000\"\nseeds = [\"seed.example:7468\"]\nbuddies = 3\n\
             pairing = \"auto\"\npairing_secret = \"office-secret\"\nbeacon_to = []\n",
        )
        .unwrap()
        .overlay;
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(c.seeds, ["seed.example:7468"]);
        assert_eq!((c.buddies, c.pairing), (3, Pairing::Auto));
        assert!(c.beacon_to.is_empty());
        let shown = parse("[overlay]\npairing_secret = \"office-secret\"\n").unwrap().to_toml();
        assert!(!shown.contains("office-secret"), "the secret is never shown: {shown}");
        let e = parse("[overlay]\npairing = \"auto\"\n").unwrap_err();
        assert!(e.reason.contains("needs a pairing_secret"), "{e}");
        assert_eq!(e.line, Some(2));
        assert!(parse("[overlay]\npairing_secret = \"short\"\n").is_err());
        assert!(parse("[overlay]\npairing = \"yes\"\npairing_secret = \"long enough\"\n").is_err());
        assert!(parse("[overlay]\nseeds = [\"nohost\"]\n").is_err());
        assert!(parse("[overlay]\nmin_coverage = 1.5\n").is_err());
        assert!(parse("[overlay]\nbuddies = 99\n").is_err());
        assert!(parse("[overlay]\nbogus = 1\n").is_err());
        let c = parse("[overlay]\nreplace_after = \"30s\"\nreplace_after_failures = 2\nspares = [\"10.0.0.9:7467\", \"ABCD@nas:7467\"]\n")
            .unwrap()
            .overlay;
        assert_eq!((c.replace_after, c.replace_after_failures, c.spares.len()), (30, 2, 2));
        assert_eq!(OverlayConfig::default().replace_after, 14 * 86_400, "14 days by default");
        assert!(parse("[overlay]\nreplace_after = \"soon\"\n").is_err());
        assert!(parse("[overlay]\nreplace_after_failures = 0\n").is_err());
        assert!(parse("[overlay]\nspares = [\"CODE@\"]\n").is_err());
    }
}
