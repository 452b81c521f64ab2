//! The buddy side of a client's life, with the buddy's clock moved on by
//! the test-only `PASTICHE_TEST_CLOCK_OFFSET`: a client silent for half the
//! grace period is warned about (`clients list`, `status` health), one
//! silent for the whole period is decommissioned (its data released, the
//! space reclaimed by prune), and should it come back it ships everything
//! again.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::buddy::*;
use common::daemon::*;
use common::*;
use rand::{Rng, SeedableRng};

const DAY: u64 = 86_400;
const OFFSET: &str = "PASTICHE_TEST_CLOCK_OFFSET";

fn tree(root: &Path) -> std::path::PathBuf {
    let mut rng = rand::rngs::StdRng::seed_from_u64(90);
    let home = root.join("home");
    for i in 0..6 {
        write_random(&home.join(format!("f{i}.bin")), rng.gen_range(100_000..300_000), &mut rng);
    }
    home
}

fn the_client(b: &TestBox) -> serde_json::Value {
    let clients = b.run(["--json", "clients", "list"]).ok().json_lines();
    assert_eq!(clients.len(), 1, "{clients:?}");
    clients[0].clone()
}

#[test]
fn a_silent_client_is_warned_about_then_decommissioned_and_its_space_reclaimed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let addr = free_addr();
    let server = Server::start_at(&b, &addr);
    pair(&a, &b, &addr);
    a.run([OsStr::new("backup"), tree(tmp.path()).as_os_str()]).ok();
    server.kill();
    let held = the_client(&b);
    assert!(held["used_bytes"].as_u64().unwrap() > 500_000, "{held}");
    assert_eq!(held["standing"], "active");
    let packs_held = b.packs_bytes();

    // 50 days of silence: past half the grace period, a warning.
    std::env::set_var(OFFSET, (50 * DAY).to_string());
    let warned = the_client(&b);
    assert_eq!(warned["standing"]["silent"]["release_at"], held["last_seen"].as_u64().unwrap() + 90 * DAY);
    let r = b.run(["clients", "list"]).ok();
    assert!(r.stdout.contains("SILENT: data released in 40 days"), "{}", r.describe());
    let mut daemon = Daemon::start(&b, "B", &["--listen", &addr, "--http", "off"]);
    let s = Daemon::wait_status(&b, 20, "the silent client's alert", |s| {
        s["health"]["alerts"].as_array().unwrap().iter().any(|a| a["code"] == "client_silent")
    });
    assert_eq!(s["health"]["verdict"], "warning", "{s:#}");
    daemon.wait_logged(20, "silent for 50 days");
    assert_eq!(the_client(&b)["used_bytes"], held["used_bytes"], "nothing released yet");
    daemon.stop();

    // 91 days: decommissioned when the daemon starts; prune reclaims it.
    std::env::set_var(OFFSET, (91 * DAY).to_string());
    let mut daemon = Daemon::start(&b, "B", &["--listen", &addr, "--http", "off"]);
    wait_for(20, "the release", || the_client(&b)["used_bytes"] == 0);
    daemon.wait_logged(20, "decommissioned");
    let released = the_client(&b);
    assert_eq!(released["committed_epoch"], 0, "{released}");
    assert_eq!(released["standing"], "decommissioned");
    // A released client is no longer an alert (the health is redone every 2 s).
    Daemon::wait_status(&b, 20, "the alert to go", |s| {
        !s["health"]["alerts"].as_array().unwrap().iter().any(|a| a["code"] == "client_silent")
    });
    b.run(["prune"]).ok();
    let packs_after = b.packs_bytes();
    assert!(packs_after + 500_000 < packs_held, "prune reclaimed the client's chunks: {packs_held} -> {packs_after}");

    // The client comes back: the buddy's epoch 0 is below its own, so it
    // ships everything again.
    a.run(["sync"]).ok();
    let back = the_client(&b);
    assert_eq!(back["standing"], "active", "{back}");
    assert!(back["used_bytes"].as_u64().unwrap() >= held["used_bytes"].as_u64().unwrap() - 1000, "{back} vs {held}");
    daemon.stop();
}
