//! The firmware buddy takes part in the overlay (issue 12, item 4): an
//! appliance daemon on the same LAN hears its beacon, measures it with the
//! overlay's ping and coverage query (which the firmware answers through
//! core's `overlay::answer_measurement`), sees that it holds the box's
//! data, and picks it as a buddy; the firmware accepts the LAN pairing
//! request because it proves the office's pairing secret (the firmware's
//! `pair=`), the daemon pairs and ships a full copy to it on its own, and
//! the box restores from it alone.
//!
//! Emulated: the board (QEMU `mps2-an386`), its LAN9118 NIC and its disk,
//! as in `firmware_netns.rs`; the LAN is a TAP device in a network
//! namespace, joined to QEMU's NIC by the `netbridge` bin (no loss here).
//! Real: the firmware ELF, smoltcp, UDP broadcast, the `pastiche` daemon
//! with both Pastry overlays and discovery, the channel and the buddy
//! session. Needs root and iproute2 (`.ci/run` runs as root): a missing
//! capability fails the test.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::{pastiche, run_ok, Netns};
use common::tap::{TapFirmware, TapLink};
use hil_tests::{assert_same_tree, build_pastiche, make_tree, require_qemu, Firmware, PAIRING_SECRET};

const TAP: &str = "ptap0";
const BUDDY: &str = "10.0.2.15:7467";
/// How the daemon names the firmware it found: its overlay (beacon) address.
const FOUND: &str = "10.0.2.15:7468";
const BRIDGE_UDP: &str = "127.0.0.1:40011";
const QEMU_UDP: &str = "127.0.0.1:40012";

/// The coverage (ppm) the daemon logged when it asked the firmware to pair.
fn asked_coverage(daemon_log: &Path) -> Option<u64> {
    let text = fs::read_to_string(daemon_log).unwrap_or_default();
    let needle = format!("asking {FOUND} to pair (found on the lan, coverage ");
    let at = text.find(&needle)? + needle.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// The snapshot last shipped to buddy `addr`, from the box's buddy list.
fn shipped_to(data: &Path, addr: &str) -> Option<String> {
    let text = fs::read_to_string(data.join("buddies.json")).ok()?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    let entry = list.as_array()?.iter().find(|b| b["addr"] == addr)?;
    entry["snapshot"].as_str().map(str::to_string)
}

#[test]
fn a_daemon_finds_the_firmware_measures_its_coverage_pairs_and_ships_to_it() {
    require_qemu!();
    let mut ns = Netns::create().unwrap_or_else(|why| panic!("cannot make the test network: {why}"));
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, target) = (tmp.path().join("tree"), tmp.path().join("out"));
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    let (disk, log, daemon_log) =
        (tmp.path().join("disk.img"), tmp.path().join("fw.defmt"), tmp.path().join("daemon.log"));
    make_tree(&tree, 1, 0x0e7);

    let link = TapLink {
        tap: TAP,
        bridge_udp: BRIDGE_UDP,
        qemu_udp: QEMU_UDP,
        loss_pct: "0",
        bridge_args: Vec::new(),
        ip: "10.0.2.15/24",
        gw: "10.0.2.2",
        settings: format!("quota_mib=512 pair={PAIRING_SECRET}"),
    };
    let firmware = TapFirmware::start(&mut ns, &fw, &link, &disk, &log);
    ns.ip(&["addr", "add", "10.0.2.2/24", "dev", TAP]);
    // A LAN has a default route; the daemon's limited broadcast follows it.
    ns.ip(&["route", "add", "default", "dev", TAP]);
    let fw_log = || firmware.text();
    firmware.wait_for(&mut ns, "buddy: serving", Duration::from_secs(30));

    // 1. A first box backs the tree up to the firmware: it now holds the
    // tree's chunks (paired by hand, with the firmware's pairing secret).
    run_ok(pastiche(&ns, &bin, &first).args(["init", "--name", "first.lan.example"]), fw_log);
    run_ok(pastiche(&ns, &bin, &first).args(["buddy", "add", BUDDY, "--code", PAIRING_SECRET]), fw_log);
    run_ok(pastiche(&ns, &bin, &first).arg("backup").arg(&tree), fw_log);

    // 2. A second box holds the same files and no buddy; its daemon keeps
    // one, pairs on its own with boxes that share the office's secret, and
    // is told no address.
    run_ok(pastiche(&ns, &bin, &second).args(["init", "--name", "second.lan.example"]), fw_log);
    let config = format!(
        "[http]\nlisten = \"off\"\n[overlay]\nbuddies = 1\npairing = \"auto\"\npairing_secret = \"{PAIRING_SECRET}\"\n"
    );
    fs::write(second.join("pastiche.toml"), config).unwrap();
    run_ok(pastiche(&ns, &bin, &second).arg("backup").arg(&tree), fw_log);
    let daemon = ns.spawn(
        pastiche(&ns, &bin, &second)
            .env("PASTICHE_LOG", "info")
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&daemon_log).unwrap()),
    );
    let daemon_text = || fs::read_to_string(&daemon_log).unwrap_or_default();

    // 3. It hears the firmware's beacon, measures it in both overlays and
    // asks it to pair, with the coverage the firmware reported: the
    // fingerprint's chunkIds the firmware holds for the first box.
    let start = Instant::now();
    let coverage = loop {
        if let Some(ppm) = asked_coverage(&daemon_log) {
            break ppm;
        }
        assert!(ns.exited(daemon).is_none(), "the daemon exited:\n{}", daemon_text());
        firmware.assert_running(&mut ns);
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the daemon never chose the firmware:\n{}\nfirmware log:\n{}",
            daemon_text(),
            fw_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("the daemon chose the firmware after {:?}, coverage {coverage} ppm", start.elapsed());
    assert!(coverage > 0, "the firmware reported no coverage of data it holds:\n{}", daemon_text());
    let overlay = fs::read_to_string(second.join("lan/overlay.json")).unwrap_or_default();
    assert!(overlay.contains("10.0.2.15:7468"), "the firmware is not a LAN neighbour: {overlay}");

    // 4. The firmware accepts the request (it proves the secret), the
    // daemon pairs over the channel with its one-time code and ships a
    // full copy; the box then restores from the firmware alone.
    let start = Instant::now();
    while shipped_to(&second, BUDDY).is_none() {
        assert!(ns.exited(daemon).is_none(), "the daemon exited:\n{}", daemon_text());
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the daemon never paired with and shipped to the firmware:\n{}\nfirmware log:\n{}",
            daemon_text(),
            fw_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("paired and shipped after {:?}", start.elapsed());
    let lines = firmware.lines();
    assert!(lines.iter().any(|l| l.contains("pairing: accepted a LAN request")), "{}", lines.join("\n"));
    run_ok(
        pastiche(&ns, &bin, &second).args(["restore", "latest", "--target"]).arg(&target).args(["--from-buddy", BUDDY]),
        fw_log,
    );
    assert_same_tree(&tree, &target.join(tree.strip_prefix("/").unwrap()));
    firmware.assert_no_panic();
}
