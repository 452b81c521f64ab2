//! Hardware-in-the-loop and multi-process tests: the harness.
//!
//! What is emulated and what is real, plainly:
//! - **Emulated:** the board (QEMU's `mps2-an386`, a Cortex-M4), its NIC
//!   (QEMU's model of the SMSC LAN9118) and its disk (a host file reached
//!   through ARM semihosting calls, standing in for flash or an SD card).
//!   The network between the host and the board is QEMU's user-mode
//!   networking (slirp) with a host port forward in `firmware_qemu.rs`, and
//!   a real TAP link inside a network namespace, bridged to QEMU's socket
//!   netdev by `netbridge` (which drops 5% of frames each way: this kernel
//!   has no netem), in `firmware_netns.rs`.
//! - **Real:** the firmware image (the very ELF that would be flashed), its
//!   TCP/IP stack (smoltcp), its chunk store, the protocol code
//!   (`pastiche_core::session::BuddySession`, shared with the appliance),
//!   and the `pastiche` binary that backs up to it and restores from it.
//!
//! [`Firmware::build`] builds the image the way a user does; [`Qemu`] boots
//! it; [`decode_log`] turns its defmt log into text in-process.

#![forbid(unsafe_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("hil-tests is in the repo").to_path_buf()
}

/// `qemu-system-arm`, if installed (`.ci/run` installs it).
pub fn qemu() -> Option<PathBuf> {
    let out = Command::new("sh").args(["-c", "command -v qemu-system-arm"]).output().ok()?;
    let p = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// Fails the calling test when QEMU is missing: a hardware-in-the-loop test
/// that cannot run must not pass (`.ci/run` installs QEMU).
#[macro_export]
macro_rules! require_qemu {
    () => {
        assert!(
            $crate::qemu().is_some(),
            "qemu-system-arm is not installed (apt-get install qemu-system-arm, or run .ci/run)"
        );
    };
}

static BUILD: Mutex<()> = Mutex::new(());

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Flags meant for this test build must not leak into nested builds.
    for v in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        c.env_remove(v);
    }
    c
}

/// The built firmware image.
pub struct Firmware {
    /// The ELF.
    pub elf: PathBuf,
}

impl Firmware {
    /// Builds the image as a user would
    /// (`cargo build --release --manifest-path firmware/Cargo.toml`, run
    /// inside `firmware/` so its `.cargo/config.toml` applies), in the
    /// firmware's own target directory.
    pub fn build() -> Result<Firmware> {
        let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let fw = repo_root().join("firmware");
        let status = cargo()
            .current_dir(&fw)
            .args(["build", "--release", "--manifest-path", "Cargo.toml", "--target", "thumbv7em-none-eabihf"])
            .status()
            .context("running cargo for the firmware")?;
        if !status.success() {
            bail!("firmware build failed");
        }
        Ok(Firmware { elf: fw.join("target/thumbv7em-none-eabihf/release/pastiche-firmware") })
    }
}

/// Builds the `pastiche` binary (`cargo build --release -p pastiche-appliance`),
/// unless `PASTICHE_TEST_BIN` names one already built.
pub fn build_pastiche() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PASTICHE_TEST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let status = cargo()
        .current_dir(&root)
        .args(["build", "--release", "-p", "pastiche-appliance", "--bin", "pastiche"])
        .status()
        .context("running cargo for pastiche")?;
    if !status.success() {
        bail!("pastiche build failed");
    }
    Ok(root.join("target/release/pastiche"))
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The pairing secret the firmware is booted with (`pair=` on its command
/// line); a box pairs with `pastiche buddy add HOST:PORT --code` it.
pub const PAIRING_SECRET: &str = "hil-pairing-secret";

/// The firmware running in QEMU.
pub struct Qemu {
    child: Child,
    /// The defmt log file (binary).
    pub log: PathBuf,
    /// The host port forwarded to the buddy's TCP port.
    pub port: u16,
    elf: PathBuf,
}

impl Qemu {
    /// Boots `fw` with `disk` as its disk, forwarding `127.0.0.1:port` to
    /// the buddy's port 7467, and waits until it serves.
    pub fn boot(fw: &Firmware, disk: &Path, log: &Path, port: u16) -> Result<Qemu> {
        Qemu::boot_with(fw, disk, log, port, "quota_mib=512")
    }

    /// [`boot`](Self::boot) with other settings (`key=value` words of the
    /// firmware's command line, e.g. `quota_mib=1024`).
    pub fn boot_with(fw: &Firmware, disk: &Path, log: &Path, port: u16, settings: &str) -> Result<Qemu> {
        let mut q = Qemu::start_with(fw, disk, log, port, settings)?;
        q.wait_for("buddy: serving", Duration::from_secs(30))?;
        // The address comes from DHCP (QEMU's slirp answers) within a second.
        q.wait_for("net: ", Duration::from_secs(30))?;
        Ok(q)
    }

    /// Starts QEMU as [`boot_with`](Self::boot_with) does, without waiting
    /// for anything (to catch what the firmware does right after booting).
    pub fn start_with(fw: &Firmware, disk: &Path, log: &Path, port: u16, settings: &str) -> Result<Qemu> {
        let qemu = qemu().context("qemu-system-arm not found")?;
        let append = format!("disk={} log={} {settings} pair={PAIRING_SECRET}", disk.display(), log.display());
        let child = Command::new(qemu)
            .args(["-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-kernel")
            .arg(&fw.elf)
            .args(["-append", &append])
            .args(["-netdev", &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:7467")])
            .args(["-net", "nic,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting qemu-system-arm")?;
        Ok(Qemu { child, log: log.to_path_buf(), port, elf: fw.elf.clone() })
    }

    /// The log so far, decoded, one line per message.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read(&self.log).ok().map(|b| decode_log(&self.elf, &b).unwrap_or_default()).unwrap_or_default()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Ok(l);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("QEMU exited ({status}) before logging {needle:?}; log:\n{}", self.lines().join("\n"));
            }
            if start.elapsed() > timeout {
                bail!("no {needle:?} in the firmware log after {timeout:?}; log:\n{}", self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the forwarded port accepts a connection.
    pub fn reachable(&self) -> bool {
        TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(2)).is_ok()
    }

    /// Pulls the plug: SIGKILL, no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Decodes a defmt log with the ELF's table: one `"<ms> <LEVEL> message"` line per frame.
pub fn decode_log(elf: &Path, bytes: &[u8]) -> Result<Vec<String>> {
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let table = defmt_decoder::Table::parse(&elf_bytes)?.context("the ELF has no defmt table")?;
    let mut dec = table.new_stream_decoder();
    dec.received(bytes);
    let mut out = Vec::new();
    loop {
        match dec.decode() {
            Ok(frame) => {
                let ts = frame.display_timestamp().map(|t| t.to_string()).unwrap_or_default();
                let level = frame.level().map(|l| l.as_str().to_uppercase()).unwrap_or_default();
                out.push(format!("{ts} {level} {}", frame.display_message()));
            }
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                out.push("<malformed defmt frame>".into());
                if table.encoding().can_recover() {
                    continue;
                }
                break;
            }
        }
    }
    Ok(out)
}

/// `len` pseudo-random bytes, the same for the same `seed` (incompressible,
/// so no two chunks alike).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// A tree of incompressible files ([`noise`]), `mib` MiB in all.
pub fn make_tree(root: &Path, mib: usize, seed: u64) {
    let mut file = 0u64;
    let mut bytes = |n: usize| {
        file += 1;
        noise(seed.wrapping_mul(1_000_003).wrapping_add(file), n)
    };
    fs::create_dir_all(root.join("docs/deep")).unwrap();
    fs::write(root.join("big.bin"), bytes(mib * 1024 * 1024 - 200_000)).unwrap();
    for i in 0..8 {
        fs::write(root.join(format!("docs/file{i}.dat")), bytes(20_000 + i * 1_000)).unwrap();
    }
    fs::write(root.join("docs/deep/notes.txt"), b"a small text file\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
}

/// Every file under `a` has an identical twin under `b`, and vice versa.
pub fn assert_same_tree(a: &Path, b: &Path) {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap()));
            }
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    walk(a, a, &mut x);
    walk(b, b, &mut y);
    x.sort();
    y.sort();
    assert_eq!(x.len(), y.len(), "file counts differ");
    for ((pa, da), (pb, db)) in x.iter().zip(&y) {
        assert_eq!(pa, pb);
        assert!(da == db, "{} differs after restore", pa.display());
    }
}

/// `pastiche --data DATA --threads 2 --quiet` with the tests' passphrase and
/// a small KDF, as the QEMU tests run the appliance beside the firmware.
pub fn pastiche(bin: &Path, data: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("PASTICHE_PASSWORD", "hil-test").env("PASTICHE_KDF_MIB", "8").arg("--data").arg(data);
    // No LAN beacons onto the host's network from a test daemon.
    c.env("PASTICHE_OVERLAY", "off");
    c.args(["--threads", "2", "--quiet"]);
    c
}

/// Runs `c`; a failure fails the test with its output and the firmware's log.
pub fn run_ok(c: &mut Command, qemu: &Qemu) -> Output {
    let out = c.output().expect("run pastiche");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}\nfirmware log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        qemu.lines().join("\n")
    );
    out
}
