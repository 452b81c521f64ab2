//! `pastiche config` and `pastiche status`.

use std::path::PathBuf;

use anyhow::Result;

use super::common::Global;
use crate::config::Config;
use crate::daemon::status::StatusReport;
use crate::daemon::{self, client, DaemonOptions};
use crate::exit::{self, ExitError};
use crate::progress::human_bytes;

/// `pastiche config [--config FILE]`: the effective configuration, as TOML
/// (or one JSON object); an invalid file is an error naming its line.
pub fn show(g: &Global, config: Option<PathBuf>) -> Result<u8> {
    let opts = DaemonOptions { data: g.data.clone(), config, ..DaemonOptions::default() };
    let c: Config = daemon::load_config(&opts)?;
    if g.json {
        g.json(&c)?;
    } else {
        match &c.source {
            Some(p) => g.line(format!("# {}", p.display()))?,
            None => g.line(format!("# {} does not exist: the defaults", Config::default_path(&g.data).display()))?,
        }
        for line in c.to_toml().lines() {
            g.line(line)?;
        }
    }
    Ok(exit::OK)
}

/// `pastiche config reload`: the daemon of the box reads its configuration
/// file again and applies it (as SIGHUP does); prints what changed. An
/// invalid file is refused with its line and the reason, and the daemon
/// keeps the configuration it had.
pub fn reload(g: &Global) -> Result<u8> {
    let Some(stream) = client::connect(&g.data)? else {
        return Err(ExitError::new(
            exit::FAILED,
            format!(
                "no daemon runs for the box in {}: nothing to reload (a daemon reads the file when it starts)",
                g.data.display()
            ),
        )
        .into());
    };
    client::run(g, stream, &crate::daemon::protocol::ClientMessage::Reload)
}

/// `pastiche status`: is the data safe (the health summary of
/// [`crate::health`], as the status page shows it) and what the daemon of
/// the box is doing. Exits 0 ok, 1 warning, 2 critical; no daemon is
/// critical.
pub fn status(g: &Global) -> Result<u8> {
    let Some(stream) = client::connect(&g.data)? else {
        let health = crate::health::no_daemon();
        return Err(ExitError::new(
            health.verdict.exit_code(),
            format!("{} (data directory {})", health.summary(), g.data.display()),
        )
        .into());
    };
    let r = client::status(stream)?;
    if g.json {
        g.json(&r)?;
    } else {
        render(g, &r)?;
    }
    Ok(r.health.as_ref().map_or(exit::OK, |h| h.verdict.exit_code()))
}

/// `pastiche status --token`: the status page's login token (made on
/// first use; only the box's user can read it).
pub fn token(g: &Global) -> Result<u8> {
    if !g.data.join(crate::repo::CONFIG_FILE).exists() {
        return Err(ExitError::new(exit::NO_BOX, format!("no box in {}", g.data.display())).into());
    }
    g.line(crate::http::auth::load_or_create_token(&g.data)?)?;
    Ok(exit::OK)
}

fn render(g: &Global, r: &StatusReport) -> Result<()> {
    if let Some(h) = &r.health {
        g.line(h.summary())?;
        for a in &h.alerts {
            g.line(format!("{:<10} {}", a.severity.label(), a.message))?;
        }
    }
    if let Some(url) = &r.http {
        g.line(format!("page       {url}"))?;
    }
    g.line(format!(
        "box        {} (daemon pid {}, up {:.0}s{})",
        r.name,
        r.pid,
        r.uptime_seconds,
        if r.stopping { ", stopping" } else { "" }
    ))?;
    g.line(format!("buddies on {}", if r.listening.is_empty() { "-".to_string() } else { r.listening.join(" ") }))?;
    for (addr, a) in &r.audits {
        g.line(format!(
            "audit      {addr}: {} ({} audits, {} failed)",
            crate::audit::record::summary(Some(a)),
            a.audits,
            a.failures
        ))?;
    }
    if let Some(c) = &r.local_check {
        g.line(format!("check      {}", c.summary()))?;
        if let Some(rep) = &c.repair {
            for f in &rep.files_affected {
                g.line(format!("affected   {f}"))?;
            }
        }
    }
    match &r.current {
        Some(c) => {
            let pct = c.fraction_done.map_or(String::new(), |f| format!(" {:.0}%", f * 100.0));
            g.line(format!(
                "running    {} for {:.0}s:{pct} {} files, {} of {}",
                c.kind.name(),
                c.seconds,
                c.files_done,
                human_bytes(c.bytes_done),
                human_bytes(c.total_bytes)
            ))?;
        }
        None => g.line("running    nothing")?,
    }
    if !r.queued.is_empty() {
        let q: Vec<&str> = r.queued.iter().map(|k| k.name()).collect();
        g.line(format!("queued     {}", q.join(", ")))?;
    }
    for (kind, at) in &r.next_run {
        g.line(format!("next       {:<7} {at}", kind.name()))?;
    }
    for (kind, res) in &r.last_result {
        g.line(format!(
            "last       {:<7} {} at {} ({:.1}s): {}",
            kind.name(),
            if res.ok { "ok" } else { "FAILED" },
            res.finished,
            res.seconds,
            res.message
        ))?;
    }
    if !r.shipping_pending.is_empty() {
        g.line(format!("pending    shipping to {}", r.shipping_pending.join(", ")))?;
    }
    for e in r.events.iter().rev().take(10).rev() {
        g.line(format!("event      {} {}", e.time, e.text))?;
    }
    Ok(())
}
