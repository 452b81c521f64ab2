//! The status page's JSON API and `/metrics` against the CLI, on real
//! daemons: box A with snapshots ships to box B (another `pastiche daemon`
//! on loopback); A's API must say what A's CLI says, `/metrics` must parse
//! as Prometheus text and carry the same figures, the actions must be
//! protected against CSRF, and stopping B must raise the alert on the page,
//! in the metrics and in `pastiche status`'s exit code. Then the access
//! rules: another user on loopback, and a LAN address in a network
//! namespace, get nothing without a login, and guesses are rate-limited.

mod common;
mod status_common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;
use rand::SeedableRng;
use serde_json::Value;
use status_common::*;

fn tree(root: &Path, seed: u64, files: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::fs::create_dir_all(root).unwrap();
    for i in 0..files {
        write_random(&root.join(format!("file-{seed}-{i}.bin")), 64 * 1024 + i * 1000, &mut rng);
    }
}

/// The samples of one metric: its labels and value.
type Samples = Vec<(HashMap<String, String>, f64)>;

/// The samples of a scrape by metric name.
fn scrape(text: &str) -> HashMap<String, Samples> {
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e}):\n{text}"));
    let mut out: HashMap<String, Samples> = HashMap::new();
    for s in parsed.samples {
        let v = match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected sample {other:?}"),
        };
        let labels: HashMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.entry(s.metric).or_default().push((labels, v));
    }
    out
}

fn sample(m: &HashMap<String, Samples>, name: &str, label: Option<(&str, &str)>) -> f64 {
    let all = m.get(name).unwrap_or_else(|| panic!("no metric {name}"));
    all.iter()
        .find(|(l, _)| label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v)))
        .unwrap_or_else(|| panic!("no sample of {name} with {label:?}: {all:?}"))
        .1
}

#[test]
fn api_and_metrics_match_the_cli_and_alerts_follow_the_buddy() {
    let tmp = tempfile::tempdir().unwrap();
    let b = TestBox::init(tmp.path().join("b"));
    let buddy_addr = free_addr();
    let mut buddy = Daemon::start(&b, "buddy", &["--listen", &buddy_addr, "--http", "127.0.0.1:0"]);

    let a = TestBox::init(tmp.path().join("a"));
    let src = tmp.path().join("src");
    tree(&src, 1, 20);
    a.backup(&src);
    tree(&src, 2, 5);
    a.backup(&src);
    common::buddy::pair(&a, &b, &buddy_addr);
    write_config(&a, &config_for(&src));
    let mut daemon = Daemon::start(&a, "a", &["--listen", &free_addr(), "--http", "127.0.0.1:0"]);
    let url = page_url(&a);

    // The pending shipping runs at start; then everything is current.
    wait_for(60, "A shipped to B and B answering", || {
        let b = get(&format!("{url}/api/buddies"), &[]).json();
        b[0]["state"] == "current" && b[0]["contact"]["bytes_held"].as_u64().is_some_and(|n| n > 0)
    });
    wait_for(30, "A healthy", || status_text(&a).0 == Some(0));
    let (_, text) = status_text(&a);
    assert!(text.starts_with("PASTICHE OK"), "{text}");

    // The API says what the CLI says.
    let cli_snapshots = a.run(["--json", "snapshots"]).ok().json_lines();
    assert_eq!(cli_snapshots.len(), 2);
    assert_eq!(get(&format!("{url}/api/snapshots"), &[]).json(), Value::Array(cli_snapshots.clone()));
    let cli_stats = a.run(["--json", "stats"]).ok().json_lines().remove(0);
    assert_eq!(get(&format!("{url}/api/stats"), &[]).json(), cli_stats);
    let cli_status = status_json(&a).unwrap();
    let api_status = get(&format!("{url}/api/status"), &[]).json();
    for field in ["name", "public_key", "pid", "listening", "http", "config", "health"] {
        assert_eq!(api_status[field], cli_status[field], "{field}");
    }
    assert_eq!(get(&format!("{url}/api/health"), &[]).json(), cli_status["health"]);
    // `buddy list` needs the box, which the daemon holds: read the list it prints from.
    let cli_buddies: Value =
        serde_json::from_str(&std::fs::read_to_string(a.data.join("buddies.json")).unwrap()).unwrap();
    let api_buddies = get(&format!("{url}/api/buddies"), &[]).json();
    assert_eq!(api_buddies[0]["addr"], buddy_addr.as_str());
    assert_eq!(api_buddies[0]["key"], cli_buddies[0]["key"]);
    assert_eq!(api_buddies[0]["state"], "current");
    assert!(api_buddies[0]["contact"]["bytes_held"].as_u64().unwrap() > 0);
    let overview = get(&format!("{url}/api/overview"), &[]).json();
    assert_eq!(overview["box"]["public_key"], cli_status["public_key"]);
    assert!(overview["box"]["disk_free"].as_u64().unwrap() > 0);

    // B's page lists A as a box stored there, with its usage.
    let b_url = page_url(&b);
    let a_key = cli_status["public_key"].as_str().unwrap();
    let a_on_b = || {
        let clients = get(&format!("{b_url}/api/clients"), &[]).json();
        clients.as_array().unwrap().iter().find(|c| c["key"] == a_key && c["last_seen"].is_i64()).cloned()
    };
    // B's overview is rebuilt every two seconds: one built while A's sync
    // was under way lists A (seen) before its chunks (used).
    let used = |c: &Value| c["used_bytes"].as_u64().is_some_and(|n| n > 0);
    wait_for(30, "A listed as a client of B, with its usage", || a_on_b().is_some_and(|c| used(&c)));
    let a_on_b = a_on_b().unwrap();
    let b_metrics = scrape(&get(&format!("{b_url}/metrics"), &[]).body);
    assert_eq!(
        sample(&b_metrics, "pastiche_client_used_bytes", Some(("client", a_key))),
        a_on_b["used_bytes"].as_u64().unwrap() as f64
    );

    // /metrics parses and carries the same figures.
    let m = get(&format!("{url}/metrics"), &[]);
    assert!(m.content_type.starts_with("text/plain; version=0.0.4"), "{}", m.content_type);
    let m = scrape(&m.body);
    assert_eq!(sample(&m, "pastiche_snapshots", None), 2.0);
    assert_eq!(sample(&m, "pastiche_chunks", None), cli_stats["chunks"].as_f64().unwrap());
    assert_eq!(sample(&m, "pastiche_stored_bytes", None), cli_stats["stored_bytes"].as_f64().unwrap());
    let newest: jiff::Timestamp = cli_snapshots[1]["time"].as_str().unwrap().parse().unwrap();
    assert_eq!(sample(&m, "pastiche_last_backup_timestamp_seconds", None), newest.as_second() as f64);
    assert_eq!(sample(&m, "pastiche_health", None), 0.0);
    assert_eq!(sample(&m, "pastiche_buddy_up", Some(("buddy", &buddy_addr))), 1.0);
    assert!(sample(&m, "pastiche_buddy_last_sync_timestamp_seconds", Some(("buddy", &buddy_addr))) > 0.0);
    assert!(sample(&m, "pastiche_buddy_last_contact_timestamp_seconds", Some(("buddy", &buddy_addr))) > 0.0);
    assert_eq!(sample(&m, "pastiche_buddy_sync_failures_total", Some(("buddy", &buddy_addr))), 0.0);
    assert!(sample(&m, "pastiche_disk_free_bytes", None) > 0.0);

    // Actions need the CSRF token (or the bearer token, which browsers never send across sites).
    let backup = format!("{url}/api/jobs/backup");
    assert_eq!(post_form(&backup, &[], &[]).code, 403, "no CSRF token");
    assert_eq!(post_form(&backup, &[("X-Csrf-Token", "guess")], &[]).code, 403, "a wrong CSRF token");
    assert_eq!(post_form(&format!("{url}/actions/backup"), &[], &[("csrf", "guess")]).code, 403);
    let page = get(&format!("{url}/"), &[]).body;
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let cross_site = [("Origin", "http://evil.example"), ("X-Csrf-Token", csrf.as_str())];
    assert_eq!(post_form(&backup, &cross_site, &[]).code, 403, "a cross-site origin");
    let token = a.run(["status", "--token"]).ok().stdout.trim().to_string();
    assert_eq!(token.len(), 64);
    let bearer = format!("Bearer {token}");
    let queued = post_form(&backup, &[("Authorization", &bearer)], &[]);
    assert_eq!(queued.code, 202, "{}", queued.body);
    assert_eq!(queued.json()["queued"], "backup");
    wait_for(60, "the backup asked for over the API", || {
        get(&format!("{url}/api/snapshots"), &[]).json().as_array().unwrap().len() == 3
    });
    // The form action with the page's token works too (a sync), and answers with a redirect to the page.
    let synced = post_form(&format!("{url}/actions/sync"), &[], &[("csrf", &csrf)]);
    assert_eq!(synced.code, 303, "{}", synced.body);

    // Another user of this machine on loopback gets nothing without a login.
    let other = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{url}/api/overview"))
        .output()
        .expect("setpriv and curl");
    assert_eq!(String::from_utf8_lossy(&other.stdout), "401", "another user on loopback: {other:?}");
    // Nor does a page whose DNS name was rebound to 127.0.0.1.
    assert_eq!(get(&format!("{url}/api/overview"), &[("Host", "evil.example")]).code, 401);

    // Stop the buddy: the alert shows everywhere.
    wait_for(60, "A healthy again after the sync", || status_text(&a).0 == Some(0));
    buddy.kill();
    wait_for(30, "the warning exit code", || status_text(&a).0 == Some(1));
    let (_, text) = status_text(&a);
    assert!(text.starts_with("PASTICHE WARNING") && text.contains(&buddy_addr), "{text}");
    let health = get(&format!("{url}/api/health"), &[]).json();
    assert_eq!(health["verdict"], "warning");
    assert!(health["alerts"].as_array().unwrap().iter().any(|a| a["code"] == "buddy_unreachable"), "{health}");
    let m = scrape(&get(&format!("{url}/metrics"), &[]).body);
    assert_eq!(sample(&m, "pastiche_buddy_up", Some(("buddy", &buddy_addr))), 0.0);
    assert_eq!(sample(&m, "pastiche_health", None), 1.0);
    let page = get(&format!("{url}/"), &[]).body;
    assert!(page.contains("data-code=\"buddy_unreachable\"") && page.contains("state-unreachable"), "{page}");

    // No daemon: critical.
    daemon.stop();
    let (code, text) = status_text(&a);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("CRITICAL"), "{text}");
}

/// Runs `ip ARGS`, failing the test with its stderr.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to this one by a veth pair: this side is
/// `10.213.N.1`, the namespace's `10.213.N.2`. Deleted on drop.
struct Lan {
    ns: String,
    host_if: String,
    host_ip: String,
}

impl Lan {
    fn create() -> Lan {
        assert!(is_root(), "this test needs root (network namespaces)");
        let id = std::process::id() % 100_000;
        let n = std::process::id() % 250 + 1;
        let lan = Lan { ns: format!("pst-http-{id}"), host_if: format!("psth{id}"), host_ip: format!("10.213.{n}.1") };
        let peer_if = format!("pstn{id}");
        ip(&["netns", "add", &lan.ns]);
        ip(&["link", "add", &lan.host_if, "type", "veth", "peer", "name", &peer_if]);
        ip(&["link", "set", &peer_if, "netns", &lan.ns]);
        ip(&["addr", "add", &format!("{}/30", lan.host_ip), "dev", &lan.host_if]);
        ip(&["link", "set", &lan.host_if, "up"]);
        ip(&["-n", &lan.ns, "addr", "add", &format!("10.213.{n}.2/30"), "dev", &peer_if]);
        ip(&["-n", &lan.ns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &lan.ns, "link", "set", "lo", "up"]);
        lan
    }

    /// `curl ARGS` from inside the namespace: (status code, body).
    fn curl(&self, args: &[&str]) -> (String, String) {
        let body = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "-m", "20", "-w", "%{http_code}", "-o"])
            .arg(body.path())
            .args(args)
            .output()
            .expect("curl in the namespace");
        (String::from_utf8_lossy(&out.stdout).into_owned(), std::fs::read_to_string(body.path()).unwrap_or_default())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn the_lan_gets_nothing_without_a_login_and_guesses_are_rate_limited() {
    let lan = Lan::create();
    let tmp = tempfile::tempdir().unwrap();
    let a = TestBox::init(tmp.path().join("a"));
    let src = tmp.path().join("src");
    tree(&src, 3, 3);
    a.backup(&src);
    let http = format!("{}:0", lan.host_ip);
    let _daemon = Daemon::start(&a, "a", &["--listen", &free_addr(), "--http", &http]);
    let url = page_url(&a);
    let name = status_json(&a).unwrap()["name"].as_str().unwrap().to_string();

    // Anonymous from the LAN: every page and API refuses, and says nothing of the box.
    for path in ["/", "/api/overview", "/api/status", "/api/snapshots", "/metrics", "/events"] {
        let (code, body) = lan.curl(&[&format!("{url}{path}")]);
        assert_eq!(code, "401", "{path} answered anonymously: {body}");
        assert!(!body.contains(&name), "{path} leaked the box's name: {body}");
    }
    let (code, _) = lan.curl(&["-X", "POST", "-d", "csrf=x", &format!("{url}/actions/backup")]);
    assert_eq!(code, "401");

    // A login with the token, then with the passphrase: a session that sees the page.
    let token = a.run(["status", "--token"]).ok().stdout.trim().to_string();
    let jar = tmp.path().join("jar");
    let jar = jar.to_str().unwrap();
    let (code, _) = lan.curl(&["-c", jar, "--data-urlencode", &format!("secret={token}"), &format!("{url}/login")]);
    assert_eq!(code, "303");
    let (code, body) = lan.curl(&["-b", jar, &format!("{url}/api/overview")]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains(&name));
    // Its actions still need the session's CSRF token.
    let (code, _) = lan.curl(&["-b", jar, "-X", "POST", "-d", "csrf=x", &format!("{url}/actions/backup")]);
    assert_eq!(code, "403");
    let (code, page) = lan.curl(&["-b", jar, &format!("{url}/")]);
    assert_eq!(code, "200");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (code, _) = lan.curl(&["-b", jar, "-X", "POST", "-d", &format!("csrf={csrf}"), &format!("{url}/actions/sync")]);
    assert_eq!(code, "303", "the session's own token is accepted");
    let (code, _) = lan.curl(&["--data-urlencode", &format!("secret={PASSWORD}"), &format!("{url}/login")]);
    assert_eq!(code, "303", "the passphrase logs in too");

    // Guessing: after five wrong secrets the address is locked out, even with the right token.
    for i in 0..5 {
        let (code, _) = lan.curl(&["-H", &format!("Authorization: Bearer wrong-{i}"), &format!("{url}/api/status")]);
        assert_eq!(code, "401", "guess {i}");
    }
    let (code, _) = lan.curl(&["--data-urlencode", &format!("secret={token}"), &format!("{url}/login")]);
    assert_eq!(code, "429", "the right token during the lockout");
    let (code, _) = lan.curl(&["-H", &format!("Authorization: Bearer {token}"), &format!("{url}/api/status")]);
    assert_eq!(code, "429");
}
