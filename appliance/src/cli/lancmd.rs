//! `pastiche buddy requests|accept|refuse`: pairing requests that boxes on
//! the LAN or the overlays sent (and that this box sent), and the owner's
//! answer. They read and write files in `DATA/lan/` and `DATA/invites/`
//! only, so they work while the daemon runs (it sends the answers).

use anyhow::Result;
use serde::Serialize;

use super::common::Global;
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

/// How the daemon found buddy `addr`, for `buddy list`: `found on the lan,
/// coverage 93%, rtt 0.4 ms`, or `added by hand`.
pub fn found_text(g: &Global, addr: &str) -> String {
    match files::found(&g.data).ok().and_then(|m| m.get(addr).cloned()) {
        Some(f) => format!(
            "found on the {}, coverage {:.0}%, rtt {}",
            f.found,
            f.coverage * 100.0,
            f.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms"))
        ),
        None => "added by hand".into(),
    }
}

/// `value` (a buddy as `buddy list --json` shows it) with `found`,
/// `coverage` and `rtt_ms` added when the daemon found it.
pub fn with_found(g: &Global, addr: &str, value: impl Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
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
