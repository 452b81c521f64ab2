//! The firmware in QEMU on a TAP link inside a network namespace (shared by
//! `firmware_netns.rs`, `firmware_overlay_netns.rs` and `lan_netns.rs`).
//!
//! QEMU's `-netdev socket,udp=...` carries the NIC's raw Ethernet frames over
//! UDP on the namespace's loopback to the `netbridge` bin, which copies them
//! to and from a TAP device (dropping a percentage each way, for kernels
//! without `netem`). The TAP device is an ordinary interface of the
//! namespace: give it an address, or make it a port of a Linux bridge.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hil_tests::Firmware;

use super::netns::{firmware_lines, Netns};

/// How the TAP link is made and what the firmware is told at boot.
pub struct TapLink<'a> {
    /// The TAP device's name (created by [`TapFirmware::start`]).
    pub tap: &'a str,
    /// The bridge's UDP address on the namespace's loopback (QEMU's `udp=`).
    pub bridge_udp: &'a str,
    /// QEMU's UDP address (`localaddr=`).
    pub qemu_udp: &'a str,
    /// Percentage of frames dropped each way.
    pub loss_pct: &'a str,
    /// More `netbridge` arguments (`--seed N`, `--stats FILE`).
    pub bridge_args: Vec<String>,
    /// The firmware's static address with prefix (`10.0.2.15/24`).
    pub ip: &'a str,
    /// Its gateway.
    pub gw: &'a str,
    /// More words of the firmware's command line (`pair=SECRET quota_mib=512`).
    pub settings: String,
}

/// The firmware running in a namespace behind a TAP device; QEMU and the
/// bridge are children of the [`Netns`], killed when it is dropped.
pub struct TapFirmware {
    /// The ELF (to decode the log).
    pub elf: PathBuf,
    /// The defmt log file.
    pub log: PathBuf,
    qemu: usize,
    bridge: usize,
}

impl TapFirmware {
    /// Creates the TAP device in `ns` (up, no address), starts the bridge
    /// and boots `fw` on `disk`, logging to `log`. Does not wait.
    pub fn start(ns: &mut Netns, fw: &Firmware, link: &TapLink<'_>, disk: &Path, log: &Path) -> TapFirmware {
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["tuntap", "add", "dev", link.tap, "mode", "tap"]);
        ns.ip(&["link", "set", link.tap, "up"]);
        let bridge = ns.spawn(
            ns.exec(env!("CARGO_BIN_EXE_netbridge"))
                .args(["--tap", link.tap, "--local", link.bridge_udp, "--peer", link.qemu_udp])
                .args(["--loss", link.loss_pct])
                .args(&link.bridge_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        let append = format!(
            "disk={} log={} dhcp=off ip={} gw={} {}",
            disk.display(),
            log.display(),
            link.ip,
            link.gw,
            link.settings
        );
        let qemu = ns.spawn(
            ns.exec(hil_tests::qemu().expect("qemu-system-arm is installed"))
                .args(["-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null"])
                .args(["-semihosting-config", "enable=on,target=native"])
                .arg("-kernel")
                .arg(&fw.elf)
                .args(["-append", &append])
                .args(["-netdev", &format!("socket,id=n0,udp={},localaddr={}", link.bridge_udp, link.qemu_udp)])
                .args(["-net", "nic,netdev=n0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        TapFirmware { elf: fw.elf.clone(), log: log.to_path_buf(), qemu, bridge }
    }

    /// The log so far, decoded, one line per message.
    pub fn lines(&self) -> Vec<String> {
        firmware_lines(&self.elf, &self.log)
    }

    /// The log so far as one text.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Fails the test if QEMU or the bridge exited.
    pub fn assert_running(&self, ns: &mut Netns) {
        assert!(ns.exited(self.qemu).is_none(), "QEMU exited; log:\n{}", self.text());
        assert!(ns.exited(self.bridge).is_none(), "the bridge exited");
    }

    /// Waits until a log line contains `needle`, failing the test after
    /// `timeout` or if QEMU or the bridge exits.
    pub fn wait_for(&self, ns: &mut Netns, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            self.assert_running(ns);
            assert!(start.elapsed() < timeout, "no {needle:?} in the firmware log after {timeout:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test if the firmware panicked or halted.
    pub fn assert_no_panic(&self) {
        let lines = self.lines();
        assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
    }
}
