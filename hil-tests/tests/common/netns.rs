//! A network namespace for the tests that need their own network (the
//! QEMU tests' TAP link, the LAN's switch).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use hil_tests::decode_log;

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A network namespace and the processes in it; dropping it kills them and
/// deletes the namespace (and with it the TAP device).
pub struct Netns {
    /// The namespace's name.
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// `Err` with the reason when namespaces are not available here.
    pub fn create() -> Result<Netns, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root (network namespaces and TAP devices need CAP_NET_ADMIN)".into());
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err("/dev/net/tun is missing".into());
        }
        // Unique per process and per call (one test may make several).
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("pst-hil-{}-{n}-{nanos:x}", std::process::id());
        ip(&["netns", "add", &name])?;
        Ok(Netns { name, children: Vec::new() })
    }

    /// A command run inside the namespace.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all).unwrap();
    }

    /// Starts `c` (built with [`Netns::exec`]); it is killed on drop.
    pub fn spawn(&mut self, c: &mut Command) -> usize {
        self.children.push(c.spawn().unwrap_or_else(|e| panic!("{c:?}: {e}")));
        self.children.len() - 1
    }

    /// The exit status of child `i` if it has exited.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.children[i].try_wait().ok().flatten()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // `ip netns exec` execs the program, so these are QEMU and the bridge.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("could not delete namespace {}: {e}", self.name);
        }
    }
}

/// The firmware's defmt log so far, decoded.
pub fn firmware_lines(elf: &Path, log: &Path) -> Vec<String> {
    fs::read(log).ok().map(|b| decode_log(elf, &b).unwrap_or_default()).unwrap_or_default()
}

/// `pastiche` inside the namespace, with a data directory and test settings.
pub fn pastiche(ns: &Netns, bin: &Path, data: &Path) -> Command {
    let mut c = ns.exec(bin);
    c.env("PASTICHE_PASSWORD", "x").env("PASTICHE_KDF_MIB", "8").arg("--data").arg(data);
    c.args(["--threads", "2", "--quiet"]);
    c
}

/// Runs `c`; on failure the panic message includes the firmware's log.
pub fn run_ok(c: &mut Command, log: impl Fn() -> String) -> Output {
    let out = c.output().expect("run pastiche");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}\nfirmware log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log(),
    );
    out
}
