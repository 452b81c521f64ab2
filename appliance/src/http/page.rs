//! The status page's HTML, rendered on the server so that it reads
//! completely without JavaScript; `assets/app.js` only adds the live
//! progress of the running job (server-sent events) and reloads the page
//! when what it shows has changed.

use std::fmt::Write;

use super::overview::{BuddyView, Overview};
use crate::health::{human_duration, Verdict};
use crate::progress::human_bytes;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n",
        esc(title)
    )
}

/// "3m 20s ago" from Unix seconds, relative to `now`.
fn ago(now: i64, t: Option<i64>) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration(now - t)),
        None => "never".to_string(),
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Warning => "warning",
        Verdict::Critical => "critical",
    }
}

/// The login page (`failed`: say the last secret was wrong or locked out).
pub fn login(failed: Option<&str>) -> String {
    let mut h = head("Pastiche: log in");
    h.push_str("<body class=\"login\"><main><h1>Pastiche</h1>");
    if let Some(why) = failed {
        let _ = write!(h, "<p class=\"error\" id=\"login-error\">{}</p>", esc(why));
    }
    h.push_str(
        "<form method=\"post\" action=\"/login\"><label>Token (from <code>pastiche status --token</code>) \
         or the box's passphrase <input type=\"password\" name=\"secret\" autocomplete=\"current-password\" \
         autofocus></label> <button type=\"submit\">Log in</button></form></main></body></html>\n",
    );
    h
}

/// A short, stable summary of what the page shows apart from the running
/// job's progress: when it changes, the page is worth reloading. Only the
/// monitor's part of the overview counts (not the live status), so the page
/// and the event stream agree.
pub fn generation(o: &Overview) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in &o.snapshots {
        s["id"].as_str().hash(&mut h);
    }
    for a in &o.health.alerts {
        a.code.hash(&mut h);
        a.message.hash(&mut h);
    }
    for b in &o.buddies {
        (&b.addr, &b.state, b.contact.last_sync, b.epoch).hash(&mut h);
    }
    for c in &o.clients {
        (&c.key, c.used_bytes).hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

fn job_section(out: &mut String, o: &Overview) {
    let s = &o.status;
    match &s.current {
        Some(c) => {
            let pct = c.fraction_done.map_or(String::new(), |f| format!("{:.0}%", f * 100.0));
            let _ = write!(
                out,
                "<div id=\"job\" data-kind=\"{kind}\"><span id=\"job-text\">{kind} running for {secs:.0}s: {pct} \
                 {files} files, {done} of {total}</span> <progress id=\"job-progress\" max=\"1\" value=\"{value}\">\
                 {pct}</progress></div>",
                kind = c.kind.name(),
                secs = c.seconds,
                files = c.files_done,
                done = human_bytes(c.bytes_done),
                total = human_bytes(c.total_bytes),
                value = c.fraction_done.unwrap_or(0.0),
            );
        }
        None => out.push_str(
            "<div id=\"job\" data-kind=\"\"><span id=\"job-text\">No job running.</span> \
             <progress id=\"job-progress\" max=\"1\" hidden></progress></div>",
        ),
    }
    let queued: Vec<&str> = s.queued.iter().map(|k| k.name()).collect();
    let _ = write!(
        out,
        "<p id=\"queued\">Queued: {}</p>",
        if queued.is_empty() { "nothing".to_string() } else { esc(&queued.join(", ")) }
    );
}

fn buddy_row(out: &mut String, b: &BuddyView, now: i64) {
    let _ = write!(
        out,
        "<tr data-addr=\"{addr}\"><td>{addr}</td><td title=\"{key}\"><code>{fp}</code></td>\
         <td><span class=\"state state-{state}\">{state}</span></td><td>{contact}</td><td>{sync}</td>\
         <td>{held}</td><td>{failures}</td></tr>",
        addr = esc(&b.addr),
        key = esc(b.key.as_deref().unwrap_or("not pinned yet")),
        fp = esc(b.fingerprint.as_deref().unwrap_or("-")),
        state = esc(&b.state),
        contact = ago(now, b.contact.last_contact),
        sync = ago(now, b.contact.last_sync),
        held = b.contact.bytes_held.map_or("-".to_string(), human_bytes),
        failures = b.contact.consecutive_failures,
    );
}

/// The status page for an overview; `csrf` goes into every action form.
pub fn status(o: &Overview, csrf: &str) -> String {
    let now = o.made.parse::<jiff::Timestamp>().map_or(0, |t| t.as_second());
    let b = &o.box_info;
    let v = o.health.verdict;
    let mut h = head(&format!("Pastiche: {} ({})", b.name, v.label()));
    let _ = write!(h, "<body data-generation=\"{}\">", generation(o));
    let _ = write!(
        h,
        "<header id=\"verdict\" class=\"verdict verdict-{cls}\" data-verdict=\"{cls}\"><h1>{label}</h1>",
        cls = verdict_class(v),
        label = v.label(),
    );
    if o.health.alerts.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(&o.health.summary()));
    }
    h.push_str("<ul id=\"alerts\">");
    for a in &o.health.alerts {
        let _ = write!(
            h,
            "<li class=\"alert alert-{}\" data-code=\"{}\">{}</li>",
            verdict_class(a.severity),
            esc(&a.code),
            esc(&a.message)
        );
    }
    h.push_str("</ul></header><main>");

    let disk = match (b.disk_free, b.disk_total) {
        (Some(f), Some(t)) => format!("{} free of {}", human_bytes(f), human_bytes(t)),
        _ => "unknown".to_string(),
    };
    let _ = write!(
        h,
        "<section id=\"box\"><h2>This box</h2><dl>\
         <dt>Name</dt><dd id=\"box-name\">{}</dd><dt>nodeId</dt><dd><code>{}</code></dd>\
         <dt>Key fingerprint</dt><dd title=\"{}\"><code id=\"box-fingerprint\">{}</code></dd>\
         <dt>Version</dt><dd>{}</dd><dt>Disk</dt><dd>{} used by the store; {}</dd></dl></section>",
        esc(&b.name),
        esc(&b.node_id),
        esc(&b.public_key),
        esc(&b.fingerprint),
        esc(&b.version),
        human_bytes(b.disk_used),
        disk
    );

    h.push_str("<section id=\"backups\"><h2>Backups</h2><dl>");
    let _ = write!(
        h,
        "<dt>Last backup</dt><dd id=\"last-backup\">{}</dd><dt>Schedule</dt><dd>{}</dd>\
         <dt>Next run</dt><dd>{}</dd><dt>Prune</dt><dd>{}</dd></dl>",
        o.last_backup_age_seconds.map_or("never".to_string(), |s| format!("{} ago", human_duration(s))),
        esc(&o.schedule.backup),
        esc(o.schedule.next_backup.as_deref().unwrap_or("not scheduled")),
        esc(&o.schedule.prune),
    );
    job_section(&mut h, o);
    let _ = write!(
        h,
        "<div class=\"actions\"><form method=\"post\" action=\"/actions/backup\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><button id=\"backup-now\" type=\"submit\">Back up now\
         </button></form><form method=\"post\" action=\"/actions/sync\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{c}\"><button id=\"sync-now\" type=\"submit\">Sync now</button></form></div></section>",
        c = esc(csrf)
    );

    h.push_str(
        "<section id=\"snapshots\"><h2>Snapshots</h2><table><thead><tr><th>Snapshot</th><th>Time</th>\
         <th>Files</th><th>Size</th><th>New data</th></tr></thead><tbody>",
    );
    for s in o.snapshots.iter().rev() {
        let sum = &s["summary"];
        let _ = write!(
            h,
            "<tr class=\"snapshot\" data-id=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(s["id"].as_str().unwrap_or("")),
            esc(s["short_id"].as_str().unwrap_or("")),
            esc(s["time"].as_str().unwrap_or("")),
            sum["files"].as_u64().unwrap_or(0),
            human_bytes(sum["bytes"].as_u64().unwrap_or(0)),
            human_bytes(sum["bytes_added"].as_u64().unwrap_or(0)),
        );
    }
    if o.snapshots.is_empty() {
        h.push_str("<tr><td colspan=\"5\">No snapshots yet.</td></tr>");
    }
    h.push_str("</tbody></table></section>");

    h.push_str(
        "<section id=\"buddies\"><h2>Buddies</h2><table><thead><tr><th>Address</th><th>Key</th><th>State</th>\
         <th>Last contact</th><th>Last sync</th><th>Held there</th><th>Failures in a row</th></tr></thead><tbody>",
    );
    for bv in &o.buddies {
        buddy_row(&mut h, bv, now);
    }
    if o.buddies.is_empty() {
        h.push_str("<tr><td colspan=\"7\">No buddies.</td></tr>");
    }
    h.push_str("</tbody></table></section>");

    h.push_str(
        "<section id=\"clients\"><h2>Boxes stored here</h2><table><thead><tr><th>Key</th><th>Usage</th>\
         <th>Last seen</th></tr></thead><tbody>",
    );
    for c in &o.clients {
        let _ = write!(
            h,
            "<tr data-key=\"{k}\"><td title=\"{k}\"><code>{fp}</code></td><td>{used} of {quota}</td><td>{seen}</td></tr>",
            k = esc(&c.key),
            fp = esc(&super::overview::fingerprint(&c.key)),
            used = human_bytes(c.used_bytes),
            quota = human_bytes(c.quota_bytes),
            seen = ago(now, c.last_seen),
        );
    }
    if o.clients.is_empty() {
        h.push_str("<tr><td colspan=\"3\">No box stores data here.</td></tr>");
    }
    h.push_str("</tbody></table></section>");

    // Requests from boxes on the LAN or the overlays, answered with `pastiche buddy accept ID`.
    h.push_str("<section id=\"pairing\"><h2>Pairing requests</h2>");
    if o.pairing_requests.is_empty() {
        h.push_str("<p>No pairing requests.</p>");
    } else {
        h.push_str("<ul>");
        for r in &o.pairing_requests {
            // Each summary starts with the request's ID (`buddy accept ID`).
            let id = r.split_whitespace().next().unwrap_or_default();
            let form = |answer: &str, label: &str| {
                format!(
                    "<form method=\"post\" action=\"/actions/pairing/{i}/{answer}\"><input type=\"hidden\" \
                     name=\"csrf\" value=\"{c}\"><button class=\"{answer}\" type=\"submit\">{label}</button></form>",
                    i = esc(id),
                    c = esc(csrf)
                )
            };
            let _ = write!(
                h,
                "<li class=\"pairing-request\" data-id=\"{}\">{} <span class=\"actions\">{}{}</span></li>",
                esc(id),
                esc(r),
                form("accept", "Accept"),
                form("refuse", "Refuse")
            );
        }
        h.push_str(
            "</ul><p>Compare the confirmation code with the asking box's before accepting \
             (or run <code>pastiche buddy accept ID</code>).</p>",
        );
    }
    h.push_str("</section>");

    h.push_str("<section id=\"events\"><h2>Recent events</h2><ul>");
    for e in o.status.events.iter().rev().take(12) {
        let _ = write!(h, "<li><time>{}</time> {}</li>", esc(&e.time), esc(&e.text));
    }
    let _ = writeln!(
        h,
        "</ul></section></main><footer>Updated {} · <a href=\"/api/overview\">JSON</a> · \
         <a href=\"/metrics\">metrics</a></footer><script src=\"/assets/app.js\" defer></script></body></html>",
        esc(&o.made)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn a_hostile_buddy_address_cannot_inject_markup() {
        let mut o = Overview::default();
        o.buddies.push(BuddyView { addr: "<script>alert(1)</script>:1".into(), ..BuddyView::default() });
        let page = status(&o, "tok");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }
}
