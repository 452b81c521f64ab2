//! Guessing the firmware's pairing secret, in QEMU, with the real
//! `pastiche` client: the firmware applies the core's limits on wrong codes
//! (`pastiche_core::session::PairingGuard`, the same rule as the appliance;
//! `docs/PROTOCOL.md` §4.1). Through QEMU's user networking every
//! connection comes from one address (the slirp gateway), so this is the
//! per-address limit; the global one is the same code, tested in core and
//! against `pastiche serve` (`appliance/tests/attacks.rs`).
//!
//! Skipped, with a printed reason, when qemu-system-arm is not installed.

use std::time::Duration;

use hil_tests::{build_pastiche, free_port, pastiche, require_qemu, Firmware, Qemu, PAIRING_SECRET};
use pastiche_core::session::FREE_WRONG_PER_SOURCE;

#[test]
fn wrong_boot_secrets_are_throttled_and_the_right_one_pairs_after_the_wait() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let qemu = Qemu::boot(&fw, &tmp.path().join("disk.img"), &tmp.path().join("fw.defmt"), port).expect("boots");
    let addr = format!("127.0.0.1:{port}");
    let (attacker, honest) = (tmp.path().join("attacker"), tmp.path().join("honest"));
    for (data, name) in [(&attacker, "attacker.example"), (&honest, "honest.example")] {
        hil_tests::run_ok(pastiche(&bin, data).args(["init", "--name", name]), &qemu);
    }
    let add = |data: &std::path::Path, code: &str| {
        let out = pastiche(&bin, data).args(["buddy", "add", &addr, "--code", code]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // The free wrong secrets are checked; so is each next one once the
    // source's wait (1 s, then 2 s, doubling) is over: until then it is
    // refused unchecked. (The waits run on the firmware's clock, which lags
    // the host's on a loaded machine: so retry rather than sleep exactly.)
    let mut refused_unchecked = 0;
    for i in 0..FREE_WRONG_PER_SOURCE + 3 {
        loop {
            let (ok, err) = add(&attacker, &format!("wrong-secret-{i}"));
            assert!(!ok, "a wrong secret paired");
            if err.contains("pairing code unknown") {
                break;
            }
            assert!(err.contains("too many wrong pairing codes from this address"), "guess {i}: {err}");
            assert!(i > FREE_WRONG_PER_SOURCE, "guess {i} had to wait: {err}");
            refused_unchecked += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!("{refused_unchecked} guesses refused unchecked while waiting");
    // Right after the sixth wrong secret (a 4 s wait): even the right
    // secret, from another box, is refused unchecked.
    let (ok, err) = add(&honest, PAIRING_SECRET);
    assert!(!ok && err.contains("too many wrong pairing codes from this address"), "{err}");
    // After the stated back-off it pairs.
    let mut tries = 0;
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let (ok, err) = add(&honest, PAIRING_SECRET);
        if ok {
            break;
        }
        tries += 1;
        assert!(tries < 60 && err.contains("from this address"), "the right secret after the wait: {err}");
    }
    let lines = qemu.lines();
    assert!(lines.iter().any(|l| l.contains("too many wrong pairing codes")), "the refusals are logged");
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
}
