//! Boxes that find, pair with and keep their buddies on their own, on a
//! real network: six appliance daemons, each in its own network namespace
//! with its own kernel TCP/IP stack, joined by veth links to one Linux
//! bridge (a LAN switch) in a seventh namespace. Nothing is typed but the
//! documented `[overlay]` configuration: no address, no code.
//!
//! - Five members share `pairing = "auto"` and a `pairing_secret`; three of
//!   them hold the same data (group X), two hold other data (group Y).
//! - A stranger holds group X's data (so it is an attractive buddy) but has
//!   no secret: it must never be admitted, and its own requests must wait
//!   for an owner.
//!
//! Checked: every member pairs with two members, group X picks within
//! group X (coverage), ships them its snapshot; the stranger is nowhere;
//! a flood of forged beacons, overlay messages and pairing requests
//! disturbs nothing; a killed buddy is replaced by a new one that gets a
//! full copy, from which the box restores exactly.
//!
//! Emulated: nothing but the wire (veth pairs and a bridge instead of
//! cables and a switch). Real: the `pastiche` daemon binary, UDP broadcast,
//! both Pastry overlays, discovery, the channel and the buddy server.
//! Needs root and iproute2 (`.ci/run` runs as root): a missing capability
//! fails the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hil_tests::{assert_same_tree, build_pastiche, make_tree};

const SECRET: &str = "lan-test-office-secret";
const MEMBERS: usize = 5;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The switch namespace, one namespace per box, and the daemons; all
/// killed and deleted on drop.
struct Lan {
    prefix: String,
    boxes: usize,
    daemons: Vec<Option<Child>>,
}

impl Lan {
    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{}", 10 + i)
    }

    fn create(boxes: usize) -> Lan {
        assert!(rustix::process::geteuid().is_root(), "not root: network namespaces need CAP_NET_ADMIN");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let lan = Lan { prefix: format!("pst-lan-{}-{nanos:x}", std::process::id()), boxes: 0, daemons: Vec::new() };
        let mut lan = lan;
        let sw = lan.switch();
        ip(&["netns", "add", &sw]).unwrap();
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
        let _ = ip(&["netns", "delete", &self.switch()]);
    }
}

struct Box {
    data: PathBuf,
    tree: PathBuf,
}

fn pastiche(lan: &Lan, i: usize, bin: &Path, data: &Path) -> Command {
    let mut c = lan.exec(i, bin);
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
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

#[test]
fn boxes_find_pair_with_and_keep_their_buddies_on_a_real_lan() {
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
            "[overlay]\nbuddies = 2\n".to_string()
        } else {
            format!("[overlay]\nbuddies = 2\npairing = \"auto\"\npairing_secret = \"{SECRET}\"\n")
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
    let logs: Vec<PathBuf> = (0..=MEMBERS).map(|i| tmp.path().join(format!("daemon{i}.log"))).collect();
    for i in 0..=MEMBERS {
        let log = fs::File::create(&logs[i]).unwrap();
        let child = pastiche(&lan, i, &bin, &boxes[i].data)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        lan.daemons[i] = Some(child);
    }
    let show = |logs: &[PathBuf], boxes: &[Box]| {
        let mut s = String::new();
        for (i, (l, b)) in logs.iter().zip(boxes).enumerate() {
            let text = fs::read_to_string(l).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            s += &format!("--- box {i} buddies {:?}\n", buddies(&b.data));
            for line in tail.into_iter().rev() {
                s += line;
                s += "\n";
            }
        }
        s
    };
    let log = || show(&logs, &boxes);

    // 1. Every member pairs with two members and ships them its latest snapshot.
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
            let j = (0..MEMBERS).find(|&j| ip_of(&addr) == Lan::addr(j)).expect("a member");
            if i <= 2 {
                assert!(j <= 2, "box {i} of group X picked box {j} of group Y over its group\n{}", log());
            }
        }
    }
    // The stranger is not admitted anywhere, and it admitted nobody on its own.
    assert!(buddies(&boxes[stranger].data).is_empty(), "the stranger has buddies\n{}", log());
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
    let listed = run_ok(pastiche(&lan, 0, &bin, &boxes[0].data).args(["buddy", "list"]));
    assert!(listed.contains("found on the lan") && listed.contains("coverage"), "buddy list: {listed}");
    let requests = run_ok(pastiche(&lan, 0, &bin, &boxes[0].data).args(["buddy", "requests"]));
    assert!(requests.contains("confirmation"), "buddy requests: {requests}");

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
    // Forged requests are never accepted: every accepted request proved the secret.
    for (i, b) in boxes.iter().enumerate().take(MEMBERS) {
        let r = fs::read_to_string(b.data.join("lan/requests.json")).unwrap_or_default();
        for obj in r.split('}') {
            if obj.contains("\"status\": \"accepted\"") {
                assert!(obj.contains("\"secret_ok\": true"), "box {i} accepted a request without the secret: {obj}");
            }
        }
    }

    // 3. A buddy dies: its box replaces it, ships a full copy to the new
    // one, and restores exactly from it.
    let victim_of = 3; // group Y: its other buddy is in group X.
    let victim_addr = buddies(&boxes[victim_of].data)[0].0.clone();
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
}
