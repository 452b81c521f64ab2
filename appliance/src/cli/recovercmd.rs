//! `pastiche recover --name FQDN [--via HOST:PORT]...`: a wiped box back
//! from its passphrase and name ([`crate::recovery`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::boxcmd::ENV_KDF_MIB;
use super::common::Global;
use crate::exit;
use crate::progress::human_bytes;
use crate::recovery::lan::LanBeacons;
use crate::recovery::{self, NoDiscovery, RecoverOptions};
use crate::repo::keys::KdfParams;
use crate::repo::password::read_passphrase;

/// `pastiche recover`; `lan`: where and for how many seconds to listen
/// for LAN beacons, if at all.
pub fn recover(g: &Global, name: String, via: Vec<String>, lan: Option<(SocketAddr, f64)>) -> Result<u8> {
    let passphrase = read_passphrase(false)?;
    let mut kdf = KdfParams::default();
    if let Ok(mib) = std::env::var(ENV_KDF_MIB) {
        kdf.memory_kib =
            mib.parse::<u32>().map_err(|_| anyhow::anyhow!("{ENV_KDF_MIB} must be a number of MiB"))? * 1024;
    }
    let opts = RecoverOptions { dir: g.data.clone(), name, passphrase, kdf, via };
    let report = match lan {
        Some((listen, wait)) => {
            if !(0.0..=600.0).contains(&wait) {
                anyhow::bail!("--lan-wait must be between 0 and 600 seconds");
            }
            if !g.quiet && !g.json {
                g.line(format!("listening for LAN beacons on UDP {listen} for {wait:.0} s..."))?;
            }
            recovery::recover(&opts, &LanBeacons::new(listen, Duration::from_secs_f64(wait)))?
        }
        None => recovery::recover(&opts, &NoDiscovery)?,
    };
    if g.json {
        for h in &report.holders {
            g.json(&json!({"message_type": "holder", "holder": h}))?;
        }
        g.json(&json!({"message_type": "summary", "report": report}))?;
        return Ok(exit::OK);
    }
    for h in &report.holders {
        match h.outcome {
            "newest" if !g.quiet => g.line(format!("holder {}: {}", h.addr, h.detail))?,
            "newest" => {}
            _ => g.warn(format!("pastiche: holder {}: {}: {}", h.addr, h.outcome.replace('_', " "), h.detail)),
        }
    }
    if !g.quiet {
        g.line(format!(
            "recovered {} (public key {}): root epoch {}, {} snapshots, {} metadata objects ({}) in {:.2}s",
            report.name,
            report.public_key,
            report.epoch,
            report.snapshots,
            report.objects,
            human_bytes(report.object_bytes),
            report.seconds
        ))?;
        if let Some(d) = &report.discovery {
            g.line(d.clone())?;
        }
        g.line(format!("buddies: {}", report.buddies.join(", ")))?;
        g.line("The data stays on the buddies: `pastiche restore latest --target DIR` brings it back.")?;
    }
    Ok(exit::OK)
}
