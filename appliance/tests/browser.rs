//! The status page in a real browser: Debian's headless Chromium, driven by
//! playwright-core (`appliance/tests/browser/status_page.mjs`), against a
//! real daemon with real snapshots and a real buddy (another `pastiche
//! daemon` on loopback). It checks the page without JavaScript, clicks
//! "Back up now", sees the progress and the new snapshot, accepts a pairing
//! request (a real datagram on the daemon's overlay socket) with its button,
//! stops the buddy and sees the alert. Screenshots go to `target/tmp/status-page/`.
//!
//! Needs `/usr/bin/chromium`, `node` and `npm ci` in `appliance/tests/browser`
//! (`.ci/run` installs them); without them the test fails, it does not skip.

mod common;
mod status_common;

use std::path::Path;
use std::process::Command;

use common::*;
use rand::SeedableRng;
use serde_json::Value;
use status_common::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn require_browser(script_dir: &Path) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (the browser test does not skip)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: apt-get install nodejs npm");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in {}",
        script_dir.display()
    );
}

#[test]
fn the_status_page_in_chromium() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    require_browser(&script_dir);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let b = TestBox::init(tmp.path().join("b"));
    let buddy_addr = free_addr();
    let buddy = Daemon::start(&b, "buddy", &["--listen", &buddy_addr, "--http", "off"]);

    let a = TestBox::init(tmp.path().join("a"));
    let src = tmp.path().join("src");
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..10 {
        write_random(&src.join(format!("small-{i}")), 100_000, &mut rng);
    }
    a.backup(&src);
    write_random(&src.join("another"), 300_000, &mut rng);
    a.backup(&src);
    common::buddy::pair(&a, &b, &buddy_addr);
    // The overlay on loopback, no beacon: a pairing request is sent to it below.
    let overlay_addr = free_addr();
    write_config(&a, &format!("{}[overlay]\nlisten = \"{overlay_addr}\"\nbeacon_to = []\n", config_for(&src)));
    // `--overlay` turns the overlay back on (the harness turns it off).
    let _daemon =
        Daemon::start(&a, "a", &["--listen", &free_addr(), "--http", "127.0.0.1:0", "--overlay", &overlay_addr]);
    let url = page_url(&a);
    wait_for(60, "the buddy current and A healthy", || {
        let b = get(&format!("{url}/api/buddies"), &[]).json();
        b[0]["state"] == "current" && status_text(&a).0 == Some(0)
    });

    // Enough new data that the backup runs long enough to watch.
    for i in 0..32 {
        write_random(&src.join(format!("big-{i}")), 8 << 20, &mut rng);
    }
    let ids = |a: &TestBox| -> Vec<String> {
        a.run(["--json", "snapshots"]).ok().json_lines().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    };
    let before = ids(&a);
    assert_eq!(before.len(), 2);

    let request_id = send_pairing_request(&overlay_addr);
    wait_for(30, "the pairing request on the page", || {
        get(&format!("{url}/api/overview"), &[]).body.contains(&request_id)
    });

    let out = Command::new("node")
        .arg(script_dir.join("status_page.mjs"))
        .env("PAGE_URL", &url)
        .env("EXPECTED_SNAPSHOTS", serde_json::to_string(&before).unwrap())
        .env("BUDDY_ADDR", &buddy_addr)
        .env("BUDDY_PID", buddy.pid().to_string())
        .env("SCREENSHOT_DIR", &shots)
        .env("PAIRING_ID", &request_id)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the browser script failed ({}):\n{stderr}", out.status);
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("the browser script printed no result ({e}): {}", String::from_utf8_lossy(&out.stdout))
    });

    // What the browser saw is what the CLI says.
    let after = ids(&a);
    assert_eq!(after.len(), 3);
    let mut shown: Vec<String> =
        seen["after_backup"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    shown.sort();
    let mut expected = after.clone();
    expected.sort();
    assert_eq!(shown, expected, "the page's snapshots after the backup");
    let progress = seen["progress"].as_array().unwrap();
    assert!(progress.iter().any(|p| p.as_str().unwrap().starts_with("backup running")), "{progress:?}");
    assert_eq!(seen["buddy_state"], "unreachable");
    assert_eq!(seen["verdict"], "warning");
    assert!(seen["alerts"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().contains(&buddy_addr)), "{seen}");
    for shot in ["status-page.png", "status-page-progress.png"] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot} is not a screenshot");
    }
    // The button filed the invitation, and the daemon answered the request.
    assert_eq!(seen["pairing_accepted"], request_id.as_str());
    let mut confirm = String::new();
    wait_for(30, "the request accepted", || {
        let lines = a.run(["--json", "buddy", "requests"]).ok().json_lines();
        let accepted = lines.iter().find(|r| r["id"] == request_id.as_str() && r["status"] == "accepted");
        confirm = accepted.map(|r| r["confirm"].as_str().unwrap().to_string()).unwrap_or_default();
        accepted.is_some()
    });
    let shown = seen["pairing_text"].as_str().unwrap();
    assert!(shown.contains(&confirm) && shown.contains("office-nas"), "the page showed {shown:?}, not {confirm}");
    drop(buddy);
}

/// Sends a pairing request from a made-up box to the overlay socket at
/// `addr`; returns its ID (as `buddy accept` takes it).
fn send_pairing_request(addr: &str) -> String {
    use pastiche_core::wire::pairing::{code_digest, PairRequest, PairingMessage};
    use pastiche_core::wire::Fixed;
    let client_key = [7u8; 32];
    let digest = code_digest("0123456789");
    let req = PairRequest {
        token: 1,
        client_key: Fixed(client_key),
        buddy_key: Fixed([0; 32]),
        code_digest: Fixed(digest),
        tcp_port: 7467,
        name: "office-nas",
        proof: None,
    };
    let mut buf = [0u8; 512];
    let n = PairingMessage::Request(req).encode(&mut buf).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&buf[..n], addr).unwrap();
    hex::encode(&digest[..4])
}
