//! Boxes that find, pair with and keep their buddies on their own, on a
//! real network: six appliance daemons, each in its own network namespace
//! with its own kernel TCP/IP stack, and the firmware image in QEMU, all on
//! one Linux bridge (a LAN switch) in a seventh namespace: the daemons by
//! veth links, the firmware by a TAP port (`common::tap`). Nothing is typed
//! but the documented `[overlay]` configuration and the firmware's boot
//! line: no address, no code.
//!
//! - Five members share `pairing = "auto"` and a `pairing_secret`; three of
//!   them hold the same data (group X), two hold other data (group Y).
//! - A stranger holds group X's data (so it is an attractive buddy) but has
//!   no secret: it must never be admitted on its own, and its own requests
//!   must wait for an owner.
//! - The firmware boots with the office's secret (`pair=`) and already
//!   holds group Y's files for another box of the office (backed up to it by
//!   hand before the daemons start), so it covers group Y.
//!
//! Checked: the stranger's request shows on a member with the same
//! confirmation code as on the stranger, and `pastiche buddy accept ID`
//! there pairs them (that member only); every member pairs with two
//! members on its own, group X picks within group X (coverage), ships them
//! its snapshot; no member takes the stranger; `buddy list` tells how each
//! buddy was found, its coverage and round-trip time; every member hears
//! the firmware's beacon, a group Y member measures its coverage (the
//! firmware answers the overlay's ping and coverage query), picks it, pairs
//! through its admission (the request proves the shared secret), ships to
//! it and restores exactly from it; a flood of forged beacons, overlay
//! messages and pairing requests disturbs nothing; a killed buddy is
//! replaced (`replace_after`) by a new one that gets a full copy, from
//! which the box restores exactly, and once the old one is back it is told
//! (a signed drop request) to drop the box's data and does.
//!
//! Emulated: the wire (veth pairs and a bridge instead of cables and a
//! switch) and the firmware's board, NIC and disk (QEMU `mps2-an386`).
//! Real: the `pastiche` daemon binary, the firmware ELF and its smoltcp
//! stack, UDP broadcast, both Pastry overlays, discovery, the channel and
//! the buddy servers. Needs root, iproute2 and QEMU (`.ci/run` runs as root
//! and installs them): a missing one fails the test.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{firmware_lines, ip, Netns};
use common::tap::{TapFirmware, TapLink};
use hil_tests::{assert_same_tree, build_pastiche, make_tree, require_qemu, Firmware};

const SECRET: &str = "lan-test-office-secret";
const MEMBERS: usize = 5;
/// A buddy silent this long is replaced (the default is 14 days).
const REPLACE_AFTER: &str = "30s";

/// The firmware's address on the LAN (static: the test LAN has no DHCP).
const FIRMWARE_IP: &str = "10.77.0.30";
/// Its buddy service.
const FIRMWARE: &str = "10.77.0.30:7467";
/// How the daemons name it as a LAN neighbour: its beacon's source.
const FIRMWARE_FOUND: &str = "10.77.0.30:7468";

/// The switch namespace (with the firmware's QEMU and bridge), one
/// namespace per box, and the daemons; all killed and deleted on drop.
struct Lan {
    prefix: String,
    boxes: usize,
    daemons: Vec<Option<Child>>,
    switch: Netns,
    firmware: Option<TapFirmware>,
}

impl Lan {
    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{}", 10 + i)
    }

    fn create(boxes: usize) -> Lan {
        let switch = Netns::create().unwrap_or_else(|why| panic!("cannot make the test network: {why}"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let prefix = format!("pst-lan-{}-{nanos:x}", std::process::id());
        let mut lan = Lan { prefix, boxes: 0, daemons: Vec::new(), switch, firmware: None };
        let sw = lan.switch.name.clone();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]).unwrap();
        ip(&["-n", &sw, "link", "set", "br0", "up"]).unwrap();
        for i in 0..boxes {
            let ns = lan.ns(i);
            ip(&["netns", "add", &ns]).unwrap();
            lan.boxes = i + 1;
            let port = format!("p{i}");
            ip(&["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]).unwrap();
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"]).unwrap();
            ip(&["-n", &sw, "link", "set", &port, "up"]).unwrap();
            ip(&["-n", &ns, "link", "set", "lo", "up"]).unwrap();
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", Lan::addr(i)), "dev", "eth0"]).unwrap();
            ip(&["-n", &ns, "link", "set", "eth0", "up"]).unwrap();
            // A LAN has a default route; the limited broadcast follows it.
            ip(&["-n", &ns, "route", "add", "default", "dev", "eth0"]).unwrap();
        }
        lan.daemons = (0..boxes).map(|_| None).collect();
        lan
    }

    /// Boots the firmware behind a TAP port of the switch's bridge, with
    /// the office's pairing secret, and waits until it serves.
    fn start_firmware(&mut self, fw: &Firmware, disk: &Path, log: &Path) {
        let link = TapLink {
            tap: "ftap0",
            bridge_udp: "127.0.0.1:40021",
            qemu_udp: "127.0.0.1:40022",
            loss_pct: "0",
            bridge_args: Vec::new(),
            ip: &format!("{FIRMWARE_IP}/24"),
            gw: "10.77.0.1",
            settings: format!("quota_mib=512 pair={SECRET}"),
        };
        let firmware = TapFirmware::start(&mut self.switch, fw, &link, disk, log);
        self.switch.ip(&["link", "set", "ftap0", "master", "br0"]);
        firmware.wait_for(&mut self.switch, "buddy: serving", Duration::from_secs(60));
        self.firmware = Some(firmware);
    }

    fn exec(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i)]).arg(program);
        c
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.daemons[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.daemons.len() {
            self.kill(i);
        }
        for i in 0..self.boxes {
            let _ = ip(&["netns", "delete", &self.ns(i)]);
        }
        // The switch (QEMU, its bridge, the namespace) goes with `switch`.
    }
}

struct Box {
    data: PathBuf,
    tree: PathBuf,
}

fn pastiche(lan: &Lan, i: usize, bin: &Path, data: &Path) -> Command {
    pastiche_in(&lan.ns(i), bin, data)
}

/// `pastiche` run in network namespace `ns`.
fn pastiche_in(ns: &str, bin: &Path, data: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(bin);
    c.env("PASTICHE_PASSWORD", "x").env("PASTICHE_KDF_MIB", "8").env("PASTICHE_LOG", "info").arg("--data").arg(data);
    c.args(["--threads", "2", "--quiet"]);
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().expect("run pastiche");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (address, snapshot shipped) of each buddy in the box's buddy list.
fn buddies(data: &Path) -> Vec<(String, Option<String>)> {
    let text = fs::read_to_string(data.join("buddies.json")).unwrap_or_else(|_| "[]".into());
    let list: Vec<serde_like::Entry> = serde_like::parse(&text);
    list.into_iter().map(|e| (e.addr, e.snapshot)).collect()
}

/// A tiny reader of `buddies.json` (hil-tests has no JSON dependency): the
/// `addr` and `snapshot` string fields of each object.
mod serde_like {
    pub struct Entry {
        pub addr: String,
        pub snapshot: Option<String>,
    }

    fn field(obj: &str, name: &str) -> Option<String> {
        let at = obj.find(&format!("\"{name}\""))?;
        let rest = &obj[at + name.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        let rest = rest.strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_string())
    }

    pub fn parse(text: &str) -> Vec<Entry> {
        text.split('}')
            .filter_map(|obj| Some(Entry { addr: field(obj, "addr")?, snapshot: field(obj, "snapshot") }))
            .collect()
    }
}

/// Words of the daemon's log lines that record a pairing decision.
const PAIRING_WORDS: [&str; 4] = ["asking", "paired", "not asking", "pairing request"];

fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

fn wait_for(what: &str, limit: Duration, lan: &mut Lan, mut done: impl FnMut() -> bool, log: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        for (i, d) in lan.daemons.iter_mut().enumerate() {
            if let Some(c) = d {
                assert!(c.try_wait().unwrap().is_none(), "daemon {i} exited while waiting for {what}\n{}", log());
            }
        }
        if let Some(f) = &lan.firmware {
            f.assert_running(&mut lan.switch);
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

#[test]
fn boxes_find_pair_with_and_keep_their_buddies_on_a_real_lan() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    // LAN_TEST_PASTICHE names a binary built beforehand (a shared build
    // directory may relink target/release/pastiche under a running test).
    let built = match std::env::var_os("LAN_TEST_PASTICHE") {
        Some(p) => PathBuf::from(p),
        None => build_pastiche().expect("pastiche builds"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("pastiche");
    fs::copy(&built, &bin).unwrap();
    let flood = PathBuf::from(env!("CARGO_BIN_EXE_lanflood"));
    let stranger = MEMBERS;
    let mut lan = Lan::create(MEMBERS + 1);
    let mut boxes = Vec::new();
    for i in 0..=MEMBERS {
        let dir = tmp.path().join(format!("box{i}"));
        let (data, tree) = (dir.join("data"), dir.join("tree"));
        // Group X (boxes 0, 1, 2) and the stranger hold the same files;
        // group Y (3, 4) others. Each box also has a file of its own.
        let group = if i <= 2 || i == stranger { 0x51 } else { 0x7e };
        make_tree(&tree, 1, group);
        fs::write(tree.join(format!("own-{i}.txt")), format!("box {i}\n").repeat(1000)).unwrap();
        run_ok(pastiche(&lan, i, &bin, &data).args(["init", "--name", &format!("box{i}.lan.example")]));
        let overlay = if i == stranger {
            format!("[overlay]\nbuddies = 2\nreplace_after = \"{REPLACE_AFTER}\"\n")
        } else {
            format!(
                "[overlay]\nbuddies = 2\nreplace_after = \"{REPLACE_AFTER}\"\npairing = \"auto\"\npairing_secret = \"{SECRET}\"\n"
            )
        };
        let config = format!(
            "[backup]\npaths = [\"{}\"]\nschedule = \"every 10s\"\n[http]\nlisten = \"off\"\n{overlay}",
            tree.display()
        );
        fs::write(data.join("pastiche.toml"), config).unwrap();
        // A box with data: its fingerprint exists when its daemon starts.
        run_ok(pastiche(&lan, i, &bin, &data).arg("backup").arg(&tree));
        boxes.push(Box { data, tree });
    }
    // The firmware joins the LAN; another box of the office (in box 3's
    // namespace, no daemon) pairs with it by hand with the office's secret
    // and backs up group Y's files to it, so that it holds data like group Y's.
    let fw_defmt = tmp.path().join("fw.defmt");
    lan.start_firmware(&fw, &tmp.path().join("fw-disk.img"), &fw_defmt);
    let (seeder, seeder_tree) = (tmp.path().join("seeder/data"), tmp.path().join("seeder/tree"));
    make_tree(&seeder_tree, 1, 0x7e);
    run_ok(pastiche(&lan, 3, &bin, &seeder).args(["init", "--name", "seeder.lan.example"]));
    run_ok(pastiche(&lan, 3, &bin, &seeder).args(["buddy", "add", FIRMWARE, "--code", SECRET]));
    run_ok(pastiche(&lan, 3, &bin, &seeder).arg("backup").arg(&seeder_tree));
    assert!(buddies(&seeder).iter().any(|(a, snap)| a == FIRMWARE && snap.is_some()), "the seeder shipped nothing");

    let logs: Vec<PathBuf> = (0..=MEMBERS).map(|i| tmp.path().join(format!("daemon{i}.log"))).collect();
    let start_daemon = |lan: &mut Lan, i: usize, boxes: &[Box]| {
        let log = fs::OpenOptions::new().create(true).append(true).open(&logs[i]).unwrap();
        let child = pastiche(lan, i, &bin, &boxes[i].data)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        lan.daemons[i] = Some(child);
    };
    for i in 0..=MEMBERS {
        start_daemon(&mut lan, i, &boxes);
    }
    let show = |logs: &[PathBuf], boxes: &[Box]| {
        let mut s = String::new();
        let fw_lines = firmware_lines(&fw.elf, &fw_defmt);
        s += &format!("--- firmware\n{}\n", fw_lines[fw_lines.len().saturating_sub(25)..].join("\n"));
        for (i, (l, b)) in logs.iter().zip(boxes).enumerate() {
            let text = fs::read_to_string(l).unwrap_or_default();
            // Every pairing decision (they come early and scroll out of the
            // tail), then the tail.
            let decisions = text.lines().filter(|l| PAIRING_WORDS.iter().any(|w| l.contains(w)));
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            s += &format!("--- box {i} buddies {:?}\n", buddies(&b.data));
            for line in decisions {
                s += &format!("  decision: {line}\n");
            }
            for line in tail.into_iter().rev() {
                s += line;
                s += "\n";
            }
        }
        s
    };
    let log = || show(&logs, &boxes);

    // 0. The stranger asks members to pair: its request waits on a member,
    // which shows the same confirmation code as the stranger; the member's
    // owner accepts it by its ID.
    let stranger_ip = Lan::addr(stranger);
    let mut accepted_by = None;
    let ns: Vec<String> = (0..=MEMBERS).map(|i| lan.ns(i)).collect();
    wait_for(
        "a member showing the stranger's request with the stranger's confirmation code",
        Duration::from_secs(180),
        &mut lan,
        || {
            let sent = run_ok(pastiche_in(&ns[stranger], &bin, &boxes[stranger].data).args(["buddy", "requests"]));
            for i in 0..MEMBERS {
                let received = run_ok(pastiche_in(&ns[i], &bin, &boxes[i].data).args(["buddy", "requests"]));
                let Some(line) = received.lines().find(|l| {
                    l.starts_with("received") && l.contains(&format!("{stranger_ip}:")) && l.contains("pending")
                }) else {
                    continue;
                };
                let their = confirmation(line);
                let mine = sent.lines().find(|l| l.starts_with("sent") && l.contains(&format!("{}:", Lan::addr(i))));
                let Some(mine) = mine.and_then(confirmation) else { continue };
                assert_eq!(their.as_ref(), Some(&mine), "confirmation codes differ:\n{line}\n{sent}");
                assert!(!line.contains("shared secret"), "the stranger proved no secret: {line}");
                let id = line.split_whitespace().nth(1).unwrap().to_string();
                let out = run_ok(pastiche_in(&ns[i], &bin, &boxes[i].data).args(["buddy", "accept", &id]));
                assert!(out.contains(&mine), "buddy accept shows the confirmation code: {out}");
                accepted_by = Some(i);
                return true;
            }
            false
        },
        log,
    );
    let accepted_by = accepted_by.unwrap();
    eprintln!("box {accepted_by} accepted the stranger's request");

    // 1. Every member pairs with two buddies (members, or the firmware for
    // group Y) and ships them its latest snapshot.
    let paired = |boxes: &[Box]| {
        (0..MEMBERS).all(|i| {
            let b = buddies(&boxes[i].data);
            b.len() == 2 && b.iter().all(|(_, snap)| snap.is_some())
        })
    };
    wait_for(
        "every member paired with two buddies and shipped to them",
        Duration::from_secs(240),
        &mut lan,
        || paired(&boxes),
        log,
    );
    for (i, b) in boxes.iter().enumerate().take(MEMBERS) {
        for (addr, _) in buddies(&b.data) {
            assert_ne!(ip_of(&addr), Lan::addr(stranger), "box {i} took the stranger as a buddy\n{}", log());
            if addr == FIRMWARE {
                assert!(i > 2, "box {i} of group X picked the firmware (group Y's data) over its group\n{}", log());
                continue;
            }
            let j = (0..MEMBERS).find(|&j| ip_of(&addr) == Lan::addr(j)).expect("a member or the firmware");
            if i <= 2 {
                assert!(j <= 2, "box {i} of group X picked box {j} of group Y over its group\n{}", log());
            }
        }
    }
    // The stranger paired with the member whose owner accepted it, and
    // shipped to it; it admitted nobody on its own.
    wait_for(
        "the stranger paired with the member that accepted it",
        Duration::from_secs(120),
        &mut lan,
        || buddies(&boxes[stranger].data).iter().any(|(a, snap)| ip_of(a) == Lan::addr(accepted_by) && snap.is_some()),
        log,
    );
    for (a, _) in buddies(&boxes[stranger].data) {
        assert_eq!(ip_of(&a), Lan::addr(accepted_by), "the stranger was admitted without its owner\n{}", log());
    }
    let stranger_requests = fs::read_to_string(boxes[stranger].data.join("lan/requests.json")).unwrap_or_default();
    assert!(!stranger_requests.contains("\"accepted\""), "the stranger accepted on its own: {stranger_requests}");
    // Its requests wait for an owner on the members it asked, shown with a confirmation code.
    let waiting = (0..MEMBERS).any(|i| {
        let r = fs::read_to_string(boxes[i].data.join("lan/requests.json")).unwrap_or_default();
        r.contains(&format!("\"{}:", Lan::addr(stranger)))
            && r.contains("\"pending\"")
            && r.contains("\"secret_ok\": false")
    });
    assert!(waiting, "no member shows the stranger's request as waiting\n{}", log());
    let requests = run_ok(pastiche(&lan, 0, &bin, &boxes[0].data).args(["buddy", "requests"]));
    assert!(requests.contains("confirmation"), "buddy requests: {requests}");

    // The firmware: every member heard its beacon (no address typed); a
    // group Y member measured its coverage (it answered the overlay's ping
    // and coverage query), chose it, paired through its admission (the
    // request proved the office's secret), shipped to it, and restores
    // exactly from it alone.
    for (i, b) in boxes.iter().enumerate().take(MEMBERS) {
        let overlay = fs::read_to_string(b.data.join("lan/overlay.json")).unwrap_or_default();
        assert!(overlay.contains(FIRMWARE_FOUND), "box {i} has not heard the firmware: {overlay}");
    }
    let on_firmware: Vec<usize> =
        (3..MEMBERS).filter(|&i| buddies(&boxes[i].data).iter().any(|(a, _)| a == FIRMWARE)).collect();
    let &y = on_firmware.first().unwrap_or_else(|| panic!("no group Y member chose the firmware\n{}", log()));
    let coverage = asked_coverage(&logs[y]).unwrap_or_else(|| panic!("box {y} never asked the firmware\n{}", log()));
    eprintln!("box {y} chose the firmware, coverage {coverage} ppm (group Y members on it: {on_firmware:?})");
    assert!(coverage > 0, "the firmware's coverage of group Y's data is {coverage} ppm\n{}", log());
    let fw_lines = lan.firmware.as_ref().unwrap().lines();
    assert!(fw_lines.iter().any(|l| l.contains("pairing: accepted a LAN request")), "{}", fw_lines.join("\n"));
    let listed = run_ok(pastiche(&lan, y, &bin, &boxes[y].data).args(["buddy", "list"]));
    let line = listed.lines().find(|l| l.contains(FIRMWARE)).unwrap_or_else(|| panic!("buddy list: {listed}"));
    assert!(line.contains("found on the lan, coverage "), "buddy list tells how and coverage: {line}");
    let target = tmp.path().join("restored-from-firmware");
    run_ok(
        pastiche(&lan, y, &bin, &boxes[y].data)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .args(["--from-buddy", FIRMWARE]),
    );
    let tree = &boxes[y].tree;
    assert_same_tree(tree, &target.join(tree.strip_prefix("/").unwrap()));

    // 2. A flood of forged datagrams, to every box and to the broadcast
    // address, from the stranger's namespace, changes nothing.
    let before: Vec<_> = (0..MEMBERS).map(|i| buddies(&boxes[i].data)).collect();
    let mut targets: Vec<String> = (0..MEMBERS).map(|i| format!("{}:7468", Lan::addr(i))).collect();
    targets.push("255.255.255.255:7468".into());
    let out = lan.exec(stranger, &flood).args(["--seconds", "8", "--sockets", "64"]).args(&targets).output().unwrap();
    assert!(out.status.success(), "lanflood: {}", String::from_utf8_lossy(&out.stderr));
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("forged datagrams sent: {sent}");
    assert!(sent > 10_000, "the flood was too small: {sent}");
    std::thread::sleep(Duration::from_secs(3));
    for (i, d) in lan.daemons.iter_mut().enumerate() {
        assert!(d.as_mut().unwrap().try_wait().unwrap().is_none(), "daemon {i} died in the flood\n{}", log());
    }
    for (i, (b, before)) in boxes.iter().zip(&before).enumerate() {
        let now: Vec<String> = buddies(&b.data).into_iter().map(|b| b.0).collect();
        let was: Vec<String> = before.iter().map(|b| b.0.clone()).collect();
        assert_eq!(now, was, "box {i}'s buddies changed in the flood\n{}", log());
        let r = fs::read_to_string(b.data.join("lan/requests.json")).unwrap_or_default();
        assert!(r.matches("\"id\"").count() <= 32, "box {i} keeps more than 32 requests");
    }
    // Forged requests are never accepted: every accepted request proved the
    // secret, but the one the owner accepted by hand.
    for (i, b) in boxes.iter().enumerate().take(MEMBERS) {
        let r = fs::read_to_string(b.data.join("lan/requests.json")).unwrap_or_default();
        for obj in r.split('}') {
            let by_owner = i == accepted_by && obj.contains(&format!("\"{stranger_ip}:"));
            if obj.contains("\"status\": \"accepted\"") && !by_owner {
                assert!(obj.contains("\"secret_ok\": true"), "box {i} accepted a request without the secret: {obj}");
            }
        }
    }

    // 3. A buddy dies: its box replaces it, ships a full copy to the new
    // one, and restores exactly from it.
    let victim_of = 3; // group Y: its buddies are box 4, the firmware or group X.
    let victim_addr = buddies(&boxes[victim_of].data).into_iter().map(|b| b.0).find(|a| a != FIRMWARE).unwrap();
    let victim = (0..MEMBERS).find(|&j| ip_of(&victim_addr) == Lan::addr(j)).unwrap();
    lan.kill(victim);
    eprintln!("killed box {victim}, a buddy of box {victim_of}");
    let replaced = |boxes: &[Box]| {
        let b = buddies(&boxes[victim_of].data);
        b.len() == 2 && b.iter().all(|(a, snap)| ip_of(a) != Lan::addr(victim) && snap.is_some())
    };
    wait_for(
        "the lost buddy replaced and a full copy shipped",
        Duration::from_secs(240),
        &mut lan,
        || replaced(&boxes),
        log,
    );
    let new = buddies(&boxes[victim_of].data)
        .into_iter()
        .map(|b| b.0)
        .find(|a| !before[victim_of].iter().any(|(o, _)| o == a))
        .expect("a new buddy");
    assert_ne!(ip_of(&new), Lan::addr(stranger), "the replacement is the stranger");
    let target = tmp.path().join("restored");
    run_ok(
        pastiche(&lan, victim_of, &bin, &boxes[victim_of].data)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .args(["--from-buddy", &new]),
    );
    let tree = &boxes[victim_of].tree;
    assert_same_tree(tree, &target.join(tree.strip_prefix("/").unwrap()));

    // The replacement is on record, with its reason; the old buddy is out.
    let replacing = boxes[victim_of].data.join("lan/replacing.json");
    let record = fs::read_to_string(&replacing).unwrap_or_default();
    assert!(record.contains(&victim_addr) && record.contains("\"silent\""), "replacement record: {record}");

    // 4. The old buddy comes back: it is told (a signed drop request) to
    // drop the box's data, and releases it.
    let client = format!("box{victim_of}.lan.example");
    // The bytes box `victim` holds for box `victim_of`, from its `clients list`.
    let held = |lan: &Lan| -> Option<u64> {
        let out = run_ok(pastiche(lan, victim, &bin, &boxes[victim].data).args(["clients", "list", "--json"]));
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|c| c["name"].as_str().is_some_and(|n| n.contains(&client)))
            .and_then(|c| c["used_bytes"].as_u64())
    };
    let before_drop = held(&lan).unwrap_or_else(|| panic!("box {victim_of} is not a client of box {victim}"));
    assert!(before_drop > 0, "the old buddy held nothing to drop");
    start_daemon(&mut lan, victim, &boxes);
    eprintln!("restarted box {victim}");
    wait_for(
        "the old buddy told to drop the box's data",
        Duration::from_secs(180),
        &mut lan,
        || stage_of(&replacing, &victim_addr).as_deref() == Some("dropped"),
        || format!("{}\nreplacing.json: {}", log(), fs::read_to_string(&replacing).unwrap_or_default()),
    );
    let after = held(&lan).unwrap_or(0);
    assert_eq!(after, 0, "the old buddy still holds {after} bytes of the box's data (held {before_drop})");
    // The box still restores exactly from the buddies it kept.
    let kept = buddies(&boxes[victim_of].data);
    assert!(kept.iter().all(|(a, _)| ip_of(a) != Lan::addr(victim)), "the old buddy is back in the list: {kept:?}");
    // From the replacement if the box still keeps it; the daemon may
    // have replaced it meanwhile too (say, by a better box heard again),
    // and a buddy is taken out only once the kept ones hold the full copy.
    let shipped: Vec<&String> = kept.iter().filter(|(_, snap)| snap.is_some()).map(|(a, _)| a).collect();
    let from = shipped.iter().find(|a| ***a == new).or(shipped.first()).map(|a| a.to_string());
    let from = from.unwrap_or_else(|| panic!("no kept buddy holds a snapshot: {kept:?}\n{}", log()));
    let target = tmp.path().join("restored-after-drop");
    let restored = pastiche(&lan, victim_of, &bin, &boxes[victim_of].data)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .args(["--from-buddy", &from])
        .output()
        .expect("run pastiche");
    assert!(
        restored.status.success(),
        "restore from {from} (kept: {kept:?}) after the drop failed:\n{}\n{}",
        String::from_utf8_lossy(&restored.stderr),
        log()
    );
    assert_same_tree(tree, &target.join(tree.strip_prefix("/").unwrap()));

    // 5. `buddy list` tells how each buddy was found, and its coverage and
    // round-trip time as the daemon measured them again since pairing: box
    // 0's appliance buddies, and the firmware as box y's buddy.
    let mut listed = String::new();
    let measured = |out: &str, n: usize| {
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("key ")).collect();
        lines.len() == n && lines.iter().all(|l| l.contains(" measured ") && l.contains(" ago ("))
    };
    wait_for(
        "box 0's buddies and box y's firmware buddy measured again after pairing",
        Duration::from_secs(150),
        &mut lan,
        || {
            listed = run_ok(pastiche_in(&ns[0], &bin, &boxes[0].data).args(["buddy", "list"]));
            let of_y = run_ok(pastiche_in(&ns[y], &bin, &boxes[y].data).args(["buddy", "list"]));
            let firmware: String = of_y.lines().filter(|l| l.contains(FIRMWARE)).collect();
            measured(&listed, 2) && measured(&firmware, 1)
        },
        log,
    );
    for line in listed.lines().filter(|l| l.contains("key ")) {
        assert!(line.contains("found on the lan, coverage "), "buddy list tells how and coverage: {line}");
        assert!(line.contains(" ms"), "buddy list tells the round-trip time: {line}");
    }
}

/// The stage of the replacement of `addr` in `lan/replacing.json` (parsed:
/// its `reason` is an object of its own, so the text cannot be split on `}`).
fn stage_of(replacing: &Path, addr: &str) -> Option<String> {
    let text = fs::read_to_string(replacing).ok()?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    let r = list.as_array()?.iter().find(|r| r["addr"] == addr)?;
    r["stage"].as_str().map(str::to_string)
}

/// The coverage (ppm) box's daemon logged when it asked the firmware to pair.
fn asked_coverage(daemon_log: &Path) -> Option<u64> {
    let text = fs::read_to_string(daemon_log).unwrap_or_default();
    let needle = format!("asking {FIRMWARE_FOUND} to pair (found on the lan, coverage ");
    let at = text.find(&needle)? + needle.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// The confirmation code (`123 456`) in a line of `pastiche buddy requests`.
fn confirmation(line: &str) -> Option<String> {
    let at = line.find("confirmation ")? + "confirmation ".len();
    let code = line.get(at..at + 7)?;
    code.chars().all(|c| c.is_ascii_digit() || c == ' ').then(|| code.to_string())
}
