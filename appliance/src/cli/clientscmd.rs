//! `pastiche buddy invite` and `pastiche clients list|quota|revoke`: the
//! owner's side of pairing. While a daemon holds the box they run in it
//! (through its control socket), on the buddy storage it serves from.

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::Global;
use crate::buddy::admission::{self, unix_now, Invite};
use crate::buddy::crisis;
use crate::buddy::lifecycle::{Grace, Standing};
use crate::buddy::{BuddyStorage, ClientInfo};
use crate::exit;
use crate::progress::human_bytes;

/// Parses `30s`, `15m`, `24h` or `7d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().with_context(|| format!("bad duration {text:?} (try 24h)"))?;
    let scale = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("bad duration {text:?}: the unit is s, m, h or d"),
    };
    n.checked_mul(scale).filter(|&s| s > 0).with_context(|| format!("bad duration {text:?}"))
}

/// `pastiche buddy invite`: writes a one-time code into the box's data
/// directory (no lock on the box: without a daemon it needs no passphrase)
/// and prints it alone on the last line.
pub fn invite(g: &Global, quota: Option<u64>, expires: &str, name: &str) -> Result<u8> {
    if !g.data.join("box.json").exists() {
        bail!("no box at {} (pastiche init first)", g.data.display());
    }
    let ttl = parse_duration(expires)?;
    let invite = Invite { quota, expires: unix_now().saturating_add(ttl), name: name.to_string() };
    let code = admission::create(&g.data, &invite)?;
    if g.json {
        g.json_line(&json!({"message_type": "invite", "code": code, "expires": invite.expires, "quota": quota}));
    } else {
        g.line(format!(
            "One-time pairing code, valid for {expires}{}. On the other box run: pastiche buddy add HOST:PORT --code CODE",
            quota.map(|q| format!(", quota {}", human_bytes(q))).unwrap_or_default()
        ))?;
        g.line(code)?;
    }
    Ok(exit::OK)
}

fn find(storage: &BuddyStorage, key: &str) -> Result<ClientInfo> {
    let key = key.to_ascii_lowercase();
    let found: Vec<ClientInfo> =
        storage.clients()?.into_iter().filter(|c| c.key.to_string().starts_with(&key)).collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => bail!("no admitted client with key {key}"),
        _ => bail!("key {key} is ambiguous ({} clients match)", found.len()),
    }
}

/// The grace period of the box's configuration file (the default when it
/// has none or cannot be read: `pastiche config` reports why).
fn grace(g: &Global) -> Grace {
    let days = crate::config::Config::load(&g.data.join(crate::config::CONFIG_FILE), false)
        .map_or(crate::buddy::lifecycle::DEFAULT_GRACE_DAYS, |c| c.serve.client_grace_days);
    Grace::days(days)
}

/// `pastiche clients list`.
pub fn list(g: &Global, storage: &BuddyStorage) -> Result<u8> {
    let (grace, now) = (grace(g), unix_now());
    let clients = storage.clients()?;
    // Where each would go in a space crisis now (`buddy::crisis`).
    let candidates: Vec<crisis::Candidate> = clients
        .iter()
        .map(|c| crisis::Candidate {
            key: c.key,
            last_seen: c.last_seen,
            used_bytes: c.record.used_bytes,
            quota_bytes: c.record.quota_bytes,
        })
        .collect();
    let order = crisis::drop_order(&candidates, &storage.own_key(), now);
    let rank = |c: &ClientInfo| order.iter().position(|o| o.key == c.key).map(|i| i + 1);
    for c in &clients {
        let standing = grace.standing(c.last_seen, now);
        let notice = storage.notice(&c.key)?;
        if g.json {
            g.json(&json!({
                "message_type": "client",
                "key": c.key.to_string(),
                "name": c.name,
                "used_bytes": c.record.used_bytes,
                "quota_bytes": c.record.quota_bytes,
                "committed_epoch": c.record.committed_epoch,
                "admitted": c.admitted,
                "last_seen": c.last_seen,
                "standing": standing,
                "crisis_rank": rank(c),
                "dropped": notice,
            }))?;
        } else {
            let seen =
                crate::cli::common::format_time(crate::meta::model::Timestamp { secs: c.last_seen as i64, nanos: 0 });
            let note = match standing {
                Standing::Active => String::new(),
                Standing::Silent { release_at } => {
                    format!("  SILENT: data released in {} days", release_at.saturating_sub(now).div_ceil(86_400))
                }
                Standing::Decommissioned => "  DECOMMISSIONED: data released".to_string(),
            };
            let mut note = note;
            if let Some(r) = rank(c) {
                note.push_str(&format!("  crisis rank {r}"));
            }
            if let Some(n) = notice {
                let when = crate::cli::common::format_time(crate::meta::model::Timestamp {
                    secs: n.notice.dropped_at as i64,
                    nanos: 0,
                });
                note.push_str(&format!(
                    "  DROPPED ({}) {when}: {} released, notice #{} {}",
                    n.notice.reason.replace('_', " "),
                    human_bytes(n.notice.bytes),
                    n.notice.seq,
                    if n.delivered_at.is_some() { "seen by the client" } else { "not yet seen" }
                ));
            }
            g.line(format!(
                "{}  {:<16} used {:>10} of {:>10}  epoch {}  last seen {seen}{note}",
                c.key,
                if c.name.is_empty() { "-" } else { &c.name },
                human_bytes(c.record.used_bytes),
                human_bytes(c.record.quota_bytes),
                c.record.committed_epoch
            ))?;
        }
    }
    if !g.json {
        g.line(format!(
            "space crisis policy (below [serve] min_free): clients silent {}h or more go first, longest silent first, then the others furthest over quota; until the floor plus a tenth is free; never this box's own backups",
            crisis::SILENT_AFTER / 3600
        ))?;
    }
    Ok(exit::OK)
}

/// `pastiche clients quota KEY BYTES`.
pub fn quota(g: &Global, storage: &BuddyStorage, key: &str, bytes: u64) -> Result<u8> {
    let c = find(storage, key)?;
    storage.set_quota(&c.key, Some(bytes))?;
    g.line(format!("client {}: quota {}", c.key, human_bytes(bytes)))?;
    Ok(exit::OK)
}

/// `pastiche clients revoke KEY [--drop]`.
pub fn revoke(g: &Global, storage: &BuddyStorage, key: &str, drop_data: bool) -> Result<u8> {
    let c = find(storage, key)?;
    storage.revoke(&c.key, drop_data)?;
    g.line(format!("client {} revoked{}", c.key, if drop_data { ", its data dropped" } else { "" }))?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
