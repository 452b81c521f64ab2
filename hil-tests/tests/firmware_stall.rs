//! Stalled connections on the firmware buddy, in QEMU: one peer stops in
//! the middle of a channel record, another completes the channel handshake
//! and sends half a frame, a third only connects. None of them may block
//! an honest client's backup and sync; the half frame is refused at once,
//! the others are cut by the handshake deadline, and the synced tree then
//! restores exactly.
//!
//! Skipped, with a printed reason, when qemu-system-arm is not installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hil_tests::{
    assert_same_tree, build_pastiche, free_port, make_tree, pastiche, require_qemu, run_ok, Firmware, Qemu,
    PAIRING_SECRET,
};
use pastiche_core::channel::{Handshake, HANDSHAKE_RECORD_LEN, MAX_HANDSHAKE_MESSAGE, RECORD_HEADER_LEN};
use pastiche_core::Identity;

/// A channel to the buddy as a stranger; returns the stream and the
/// established channel.
fn channel(port: u16) -> (TcpStream, pastiche_core::channel::Channel) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let me = Identity::from_seed([0x5a; 32]).unwrap();
    let mut hs = Handshake::initiator(&me, [0x11; 32], None, 65_535).unwrap();
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    let n = hs.write(&mut msg).unwrap();
    s.write_all(&msg[..n]).unwrap();
    let mut header = [0u8; RECORD_HEADER_LEN];
    s.read_exact(&mut header).unwrap();
    let len = usize::from(u16::from_be_bytes(header));
    assert!(len <= MAX_HANDSHAKE_MESSAGE);
    s.read_exact(&mut msg[..len]).unwrap();
    hs.read(&msg[..len]).unwrap();
    let n = hs.write(&mut msg).unwrap();
    s.write_all(&msg[..n]).unwrap();
    (s, hs.finish().unwrap())
}

#[test]
fn stalled_connections_do_not_block_another_clients_sync() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, data, target) = (tmp.path().join("tree"), tmp.path().join("box"), tmp.path().join("out"));
    let disk = tmp.path().join("disk.img");
    make_tree(&tree, 2, 0x57a11);
    let port = free_port();
    let qemu = Qemu::boot(&fw, &disk, &tmp.path().join("fw.defmt"), port).expect("boots");

    // 1. Connected, silent.
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // 2. The first two bytes of a handshake record, then nothing.
    let mut mid_record = TcpStream::connect(("127.0.0.1", port)).unwrap();
    mid_record.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    mid_record.write_all(&[0x00]).unwrap();
    // 3. A channel, then half a frame (a hello frame's header announcing 82
    //    bytes, and 10 of them) in one record, then nothing.
    let (mut mid_frame, mut ch) = channel(port);
    let mut partial = 82u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[1, 2, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
    let mut sealed = vec![0u8; ch.sealed_len(partial.len())];
    let n = ch.seal(&partial, &mut sealed).unwrap();
    mid_frame.write_all(&sealed[..n]).unwrap();

    // The honest client backs up and syncs meanwhile.
    run_ok(pastiche(&bin, &data).args(["init", "--name", "hil-stall.example"]), &qemu);
    run_ok(pastiche(&bin, &data).args(["buddy", "add", &format!("127.0.0.1:{port}"), "--code", PAIRING_SECRET]), &qemu);
    run_ok(pastiche(&bin, &data).arg("backup").arg(&tree), &qemu);

    // The half frame was refused at once: it never held the shared decoder.
    let mut b = [0u8; 1];
    assert!(matches!(mid_frame.read(&mut b), Ok(0) | Err(_)), "the half-frame connection is closed");
    assert!(
        qemu.lines().iter().any(|l| l.contains("a frame split across records before the welcome")),
        "{}",
        qemu.lines().join("\n")
    );
    // The other two hold a socket each until the handshake deadline cuts them.
    let until = Instant::now() + Duration::from_secs(30);
    while qemu.lines().iter().filter(|l| l.contains("handshake timeout")).count() < 2 {
        assert!(Instant::now() < until, "the stalled handshakes were never cut:\n{}", qemu.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(matches!(mid_record.read(&mut b), Ok(0) | Err(_)), "the mid-record connection is closed");
    // Everything synced restores exactly.
    run_ok(
        pastiche(&bin, &data)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .args(["--from-buddy", &format!("127.0.0.1:{port}")]),
        &qemu,
    );
    assert_same_tree(&tree, &target.join(tree.strip_prefix("/").unwrap()));
    let lines = qemu.lines();
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
}
