//! The daemon audits its buddies on its own, at the interval `[audit]`
//! gives, and shows the results in `pastiche status` (human and `--json`)
//! and, for a buddy that fails, in the health alerts; `pastiche config`
//! shows the section.

mod common;

use std::ffi::OsStr;

use common::buddy::*;
use common::daemon::*;
use common::*;
use rand::SeedableRng;

#[test]
fn the_daemon_audits_at_the_configured_interval_and_reports_in_status() {
    let tmp = tempfile::tempdir().unwrap();
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let server = Server::start(&b);
    let addr = server.addr.clone();
    pair(&a, &b, &addr);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let home = tmp.path().join("home");
    for i in 0..4 {
        write_random(&home.join(format!("f{i}.bin")), 150_000, &mut rng);
    }
    a.run([OsStr::new("backup"), home.as_os_str()]).ok();
    std::fs::write(a.data.join("pastiche.toml"), "[audit]\ninterval_seconds = 1\nsamples = 8\nfetches = 1\n").unwrap();
    let shown = a.run(["config"]).ok();
    assert!(
        shown.stdout.contains("interval_seconds = 1") && shown.stdout.contains("samples = 8"),
        "{}",
        shown.describe()
    );

    let mut daemon = Daemon::start(&a, "A", &["--listen", &free_addr(), "--http", "off"]);
    let s = Daemon::wait_status(&a, 30, "two audits", |s| s["audits"][&addr]["audits"].as_u64() >= Some(2));
    let rec = &s["audits"][&addr];
    assert_eq!(rec["passed"], true, "{s:#}");
    // 8 challenged and 1 fetched, all proven; a chunk both challenged and
    // fetched counts once.
    let proven = rec["proven"].as_u64().unwrap_or(0);
    assert!((8..=9).contains(&proven), "8 challenged and 1 fetched, all proven: {rec}");
    let human = a.run(["status"]).ok();
    assert!(human.stdout.contains(&format!("audit      {}: audit passed", addr)), "{}", human.describe());

    // The buddy goes away: the next audit fails, and the health says so.
    server.kill();
    let s = Daemon::wait_status(&a, 30, "the failed audit's alert", |s| {
        s["health"]["alerts"].as_array().unwrap().iter().any(|x| x["code"] == "audit_failed")
    });
    assert_eq!(s["audits"][&addr]["suspect"], true, "{s:#}");
    daemon.stop();
}
