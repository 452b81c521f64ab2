//! `pastiche buddy requests|accept|refuse`: pairing requests that boxes on
//! the LAN or the overlays sent (and that this box sent), and the owner's
//! answer. They read and write files in `DATA/lan/` and `DATA/invites/`
//! only, so they work while the daemon runs (it sends the answers).

use anyhow::Result;
use serde::Serialize;

use super::common::Global;
use crate::buddy::admission::unix_now;
use crate::exit;
use crate::overlay::files::{self, IncomingView, OutgoingView};
use crate::overlay::owner;

/// One line of `buddy requests --json`.
#[derive(Serialize)]
#[serde(tag = "direction", rename_all = "lowercase")]
enum RequestLine<'a> {
    Received(&'a IncomingView),
    Sent(&'a OutgoingView),
}

/// `pastiche buddy requests`: requests received (with the confirmation
/// code to compare with the asking box's) and sent.
pub fn requests(g: &Global) -> Result<u8> {
    let incoming = files::incoming(&g.data)?;
    let outgoing = files::outgoing(&g.data)?;
    if g.json {
        for r in &incoming {
            g.json(&RequestLine::Received(r))?;
        }
        for r in &outgoing {
            g.json(&RequestLine::Sent(r))?;
        }
        return Ok(exit::OK);
    }
    if incoming.is_empty() && outgoing.is_empty() {
        g.line("no pairing requests")?;
    }
    for r in &incoming {
        g.line(format!(
            "received {}  from {:<20} {:<16} key {}  confirmation {}  {}{}",
            r.id,
            r.from,
            r.name,
            &r.client_key[..16],
            r.confirm,
            r.status,
            if r.secret_ok { " (shared secret)" } else { "" }
        ))?;
    }
    for r in &outgoing {
        g.line(format!(
            "sent     to {:<20} key {}  confirmation {}  {} (found on the {})",
            r.to,
            r.buddy_key.as_deref().map_or("(not yet known)", |k| &k[..16]),
            r.confirm.as_deref().unwrap_or("-"),
            r.status,
            r.found
        ))?;
    }
    Ok(exit::OK)
}

/// `pastiche buddy accept ID`: admits the asking box through the same
/// admission as a `buddy invite` code (an invitation filed under the digest
/// of the code it drew), and lets the daemon tell it.
pub fn accept(g: &Global, id: &str) -> Result<u8> {
    let r = owner::accept(&g.data, id)?;
    g.line(format!("accepted {} ({}, confirmation {}): it pairs when it next asks", r.id, r.name, r.confirm))?;
    Ok(exit::OK)
}

/// `pastiche buddy refuse ID`.
pub fn refuse(g: &Global, id: &str) -> Result<u8> {
    let r = owner::refuse(&g.data, id)?;
    g.line(format!("refused {} ({})", r.id, r.name))?;
    Ok(exit::OK)
}

/// How the daemon found buddy `addr` and how it measures now, for `buddy
/// list`: `found on the lan, coverage 93% measured 40 s ago (95% when
/// paired), rtt 0.4 ms`, or `added by hand` (with the measurement, if any).
pub fn found_text(g: &Global, addr: &str) -> String {
    let found = files::found(&g.data).ok().and_then(|m| m.get(addr).cloned());
    let measured = files::measured(&g.data).ok().and_then(|m| m.get(addr).cloned());
    describe(found.as_ref(), measured.as_ref(), unix_now())
}

fn describe(found: Option<&files::FoundBuddy>, measured: Option<&files::Measured>, now: u64) -> String {
    let rtt = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.1} ms"));
    match (found, measured) {
        (Some(f), Some(m)) => format!(
            "found on the {}, coverage {:.0}% measured {} ago ({:.0}% when paired), rtt {}",
            f.found,
            m.coverage * 100.0,
            files::ago(m.at, now),
            f.coverage * 100.0,
            rtt(m.rtt_ms.or(f.rtt_ms))
        ),
        (Some(f), None) => {
            format!("found on the {}, coverage {:.0}% when paired, rtt {}", f.found, f.coverage * 100.0, rtt(f.rtt_ms))
        }
        (None, Some(m)) => format!(
            "added by hand, coverage {:.0}% measured {} ago, rtt {}",
            m.coverage * 100.0,
            files::ago(m.at, now),
            rtt(m.rtt_ms)
        ),
        (None, None) => "added by hand".into(),
    }
}

/// `value` (a buddy as `buddy list --json` shows it) with `found`,
/// `coverage` and `rtt_ms` added when the daemon found it, and the last
/// measurement (`measured`: `coverage`, `rtt_ms`, `at` in Unix seconds).
pub fn with_found(g: &Global, addr: &str, value: impl Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        let measured = files::measured(&g.data).ok().and_then(|m| m.get(addr).cloned());
        obj.insert("measured".into(), serde_json::to_value(measured).unwrap_or_default());
        match files::found(&g.data).ok().and_then(|m| m.get(addr).cloned()) {
            Some(f) => {
                obj.insert("found".into(), f.found.into());
                obj.insert("coverage".into(), f.coverage.into());
                obj.insert("rtt_ms".into(), f.rtt_ms.into());
            }
            None => {
                obj.insert("found".into(), "hand".into());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::describe;
    use crate::overlay::files::{FoundBuddy, Measured};

    #[test]
    fn buddy_list_shows_the_last_measurement_beside_the_pairing_time_one() {
        let f = FoundBuddy { found: "lan".into(), coverage: 0.95, rtt_ms: Some(0.9), key: "k".into(), paired: 0 };
        let m = Measured { coverage: 0.4, rtt_ms: Some(0.4), at: 1_000 };
        assert_eq!(
            describe(Some(&f), Some(&m), 1_040),
            "found on the lan, coverage 40% measured 40 s ago (95% when paired), rtt 0.4 ms"
        );
        assert_eq!(describe(Some(&f), None, 1_040), "found on the lan, coverage 95% when paired, rtt 0.9 ms");
        assert_eq!(
            describe(None, Some(&m), 1_000 + 600),
            "added by hand, coverage 40% measured 10 min ago, rtt 0.4 ms"
        );
        assert_eq!(describe(None, None, 0), "added by hand");
    }
}
