//! The firmware buddy on a real TAP link inside a network namespace, with
//! 5 % packet loss in each direction, driven by the real `pastiche` binary.
//!
//! Emulated: the board (QEMU `mps2-an386`), its LAN9118 NIC and its disk (a
//! host file over ARM semihosting). The link: QEMU's
//! `-netdev socket,udp=...` carries the NIC's raw Ethernet frames over UDP
//! to the `netbridge` bin, which copies them to and from a persistent TAP
//! device (`10.0.2.2/24`) and drops 5 % of them each way (seeded, printed):
//! the kernel here has no `netem` qdisc, so the loss is made in user space.
//! The firmware runs with DHCP off on its static address `10.0.2.15/24`.
//! The client reaches it through the namespace's kernel TCP/IP stack and the
//! TAP device, not through a port forward. Real: the firmware ELF, smoltcp,
//! the chunk store, `BuddySession` and the `pastiche` client.
//!
//! Everything (tap, bridge, QEMU, `pastiche`) runs inside a uniquely named
//! namespace (`ip netns exec`, `common::tap`), deleted on every path by a
//! Drop guard. Fails, never skips, without QEMU, root, `/dev/net/tun` or
//! `ip netns add`.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{pastiche, run_ok, Netns};
use common::tap::{TapFirmware, TapLink};
use hil_tests::{assert_same_tree, build_pastiche, make_tree, require_qemu, Firmware, PAIRING_SECRET};

const TAP: &str = "ptap0";
const BUDDY: &str = "10.0.2.15:7467";
const LOSS_PCT: &str = "5";
/// UDP ports on the namespace's own loopback: the bridge's and QEMU's.
const BRIDGE_UDP: &str = "127.0.0.1:40001";
const QEMU_UDP: &str = "127.0.0.1:40002";

/// Parses the bridge's stats line into `(name, count)` pairs.
fn bridge_counts(stats: &Path) -> Vec<(String, u64)> {
    let s = fs::read_to_string(stats).unwrap_or_default();
    s.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn backup_and_exact_restore_over_a_tap_link_with_5_percent_loss() {
    require_qemu!();
    // Needs root and iproute2 (`.ci/run` runs as root and installs it): a
    // missing capability fails the test rather than skipping it.
    let mut ns = Netns::create().unwrap_or_else(|why| panic!("cannot make the test network: {why}"));
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, data, target) = (tmp.path().join("tree"), tmp.path().join("box"), tmp.path().join("out"));
    let (disk, log, stats) =
        (tmp.path().join("disk.img"), tmp.path().join("fw.defmt"), tmp.path().join("bridge.stats"));
    make_tree(&tree, 3, 0x7a9);

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let link = TapLink {
        tap: TAP,
        bridge_udp: BRIDGE_UDP,
        qemu_udp: QEMU_UDP,
        loss_pct: LOSS_PCT,
        bridge_args: vec!["--seed".into(), seed.to_string(), "--stats".into(), stats.display().to_string()],
        ip: "10.0.2.15/24",
        gw: "10.0.2.2",
        settings: format!("quota_mib=512 pair={PAIRING_SECRET}"),
    };
    let firmware = TapFirmware::start(&mut ns, &fw, &link, &disk, &log);
    ns.ip(&["addr", "add", "10.0.2.2/24", "dev", TAP]);
    let fw_log = || firmware.text();
    firmware.wait_for(&mut ns, "buddy: serving", Duration::from_secs(30));
    let lines = firmware.lines();
    assert!(lines.iter().any(|l| l.contains("net: static address 10.0.2.15/24")), "{}", lines.join("\n"));

    run_ok(pastiche(&ns, &bin, &data).args(["init", "--name", "hil-netns.example"]), fw_log);
    run_ok(pastiche(&ns, &bin, &data).args(["buddy", "add", BUDDY, "--code", PAIRING_SECRET]), fw_log);
    let t = Instant::now();
    run_ok(pastiche(&ns, &bin, &data).arg("backup").arg(&tree), fw_log);
    eprintln!("backup + ship of 3 MiB over the lossy TAP link: {:?}", t.elapsed());
    let t = Instant::now();
    run_ok(
        pastiche(&ns, &bin, &data).args(["restore", "latest", "--target"]).arg(&target).args(["--from-buddy", BUDDY]),
        fw_log,
    );
    eprintln!("restore of 3 MiB from the buddy over the lossy TAP link: {:?}", t.elapsed());
    assert_same_tree(&tree, &target.join(tree.strip_prefix("/").unwrap()));

    std::thread::sleep(Duration::from_millis(300)); // the bridge rewrites its stats every 100 ms
    let counts = bridge_counts(&stats);
    eprintln!("netbridge (seed {seed}, {LOSS_PCT}% loss each way): {counts:?}");
    let get = |k: &str| counts.iter().find(|(n, _)| n == k).map(|c| c.1).unwrap_or(0);
    assert!(get("tap_to_udp") > 1000 && get("udp_to_tap") > 1000, "little traffic crossed the bridge: {counts:?}");
    assert!(get("tap_to_udp_dropped") > 0 && get("udp_to_tap_dropped") > 0, "the bridge dropped nothing: {counts:?}");
    firmware.assert_no_panic();
}
