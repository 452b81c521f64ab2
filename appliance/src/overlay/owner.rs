//! The owner's answer to a pairing request, shared by `pastiche buddy
//! accept|refuse` and the status page's buttons: accepting files an
//! invitation under the request's code digest (the admission path of `buddy
//! invite` codes) and leaves the decision for the daemon to send; refusing
//! leaves the decision only. Files only, so they work beside a running
//! daemon.

use anyhow::{bail, Result};

use super::files::{self, Decision, IncomingView};
use crate::buddy::admission::{self, unix_now, Invite};

/// How long an accepted request's invitation stays valid (seconds).
pub const INVITE_TTL: u64 = 24 * 3600;

/// The pending request `id` (8 hex digits).
pub fn pending(data: &std::path::Path, id: &str) -> Result<IncomingView> {
    let id = id.trim().to_ascii_lowercase();
    let all = files::incoming(data)?;
    let Some(r) = all.into_iter().find(|r| r.id == id) else {
        bail!("no pairing request {id}: see `pastiche buddy requests`")
    };
    if r.status != "pending" {
        bail!("request {id} is already {}", r.status);
    }
    Ok(r)
}

/// Admits the box that sent request `id`; returns the request.
pub fn accept(data: &std::path::Path, id: &str) -> Result<IncomingView> {
    let r = pending(data, id)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&r.digest, &mut digest).map_err(|_| anyhow::anyhow!("request {id} is damaged"))?;
    let invite = Invite {
        quota: None,
        expires: unix_now() + INVITE_TTL,
        name: format!("{} (LAN, key {})", r.name, &r.client_key[..16]),
    };
    admission::create_for_digest(data, &digest, &invite)?;
    files::decide(data, &r.id, Decision::Accept)?;
    Ok(r)
}

/// Refuses request `id`; returns the request.
pub fn refuse(data: &std::path::Path, id: &str) -> Result<IncomingView> {
    let r = pending(data, id)?;
    files::decide(data, &r.id, Decision::Refuse)?;
    Ok(r)
}
