//! `pastiche daemon` as a user meets it: one process that serves buddies,
//! runs scheduled backups and answers every CLI command at the same time;
//! `pastiche config`; quiet exits on closed pipes; SIGTERM; shipping that
//! resumes after a restart.

mod common;
mod daemon_support;

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use daemon_support::*;
use rand::{Rng, SeedableRng};

fn tree(root: &std::path::Path, files: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..files {
        write_random(&root.join(format!("d{}/f{i}.bin", i % 4)), rng.gen_range(10_000..400_000), &mut rng);
    }
}

#[test]
fn the_cli_works_while_the_daemon_serves_a_buddy_and_backs_up_on_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let (sched_src, cli_src, b_src) = (tmp.path().join("sched"), tmp.path().join("cli"), tmp.path().join("b-home"));
    tree(&sched_src, 24, 1);
    tree(&cli_src, 24, 2);
    tree(&b_src, 30, 3);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let addr = free_addr();
    configure(
        &a,
        &format!("[backup]\npaths = [{}]\nschedule = \"every 1s\"\n[serve]\nlisten = [\"{addr}\"]\n", q(&sched_src)),
    );
    let daemon = Daemon::start(&a, "A", &[]);

    // B pairs with A (A invites while its daemon runs), then backs up and
    // ships to A (A serves it) while A's CLI works.
    buddy::pair(&b, &a, &addr);
    let mut b_backup = b.cmd([OsStr::new("backup"), b_src.as_os_str()]);
    b_backup.stdout(Stdio::piped()).stderr(Stdio::piped());
    let b_child = b_backup.spawn().unwrap();

    let summary = a.backup(&cli_src);
    let cli_snap = summary["snapshot_id"].as_str().unwrap().to_string();
    let snaps = a.snapshots();
    assert!(snaps.iter().any(|s| s["id"] == cli_snap.as_str()), "the CLI's snapshot is listed");
    let target = tmp.path().join("restore-cli");
    a.restore(&cli_snap[..8], &target);
    assert_tree_matches(&manifest(&cli_src), &restored_path(&target, &cli_src), "CLI backup through the daemon");
    a.check_read_data();

    let b_out = b_child.wait_with_output().unwrap();
    let b_stdout = String::from_utf8_lossy(&b_out.stdout);
    assert!(b_out.status.success() && b_stdout.contains("synced to"), "B's backup and sync to A: {b_out:?}");
    b.run(["sync"]).ok();

    // The schedule ran backups of its own meanwhile, and they are exact.
    let status = Daemon::wait_status(&a, 60, "a scheduled backup", |s| s["last_result"]["backup"]["ok"] == true);
    assert!(status["next_run"]["backup"].is_string(), "{status:#}");
    let scheduled: Vec<String> = a
        .snapshots()
        .iter()
        .filter(|s| s["paths"][0] == sched_src.to_str().unwrap())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!scheduled.is_empty(), "no scheduled snapshot");
    let target = tmp.path().join("restore-sched");
    a.restore(&scheduled[scheduled.len() - 1][..8], &target);
    assert_tree_matches(&manifest(&sched_src), &restored_path(&target, &sched_src), "scheduled backup");
    let r = a.run(["diff", &scheduled[0][..8], &scheduled[scheduled.len() - 1][..8]]).ok();
    assert!(r.stdout.contains("Added: 0  Removed: 0  Modified: 0"), "{}", r.describe());
    a.run(["stats"]).ok();

    // What B shipped to A restores exactly from A alone.
    let target = tmp.path().join("restore-b");
    restore_from_buddy(&b, &addr, &target);
    assert_tree_matches(&manifest(&b_src), &restored_path(&target, &b_src), "B's backup restored from A");

    let (code, took) = daemon.terminate();
    assert_eq!(code, Some(0), "the daemon exits cleanly on SIGTERM");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert!(!a.data.join("control.sock").exists(), "the control socket is removed");
    // Without a daemon, the CLI opens the box itself again.
    a.check_read_data();
    b.check_read_data();
}

#[test]
fn config_shows_the_effective_configuration_and_refuses_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = TestBox::init(tmp.path().join("A"));
    let r = a.run(["config"]).ok();
    assert!(r.stdout.contains("does not exist: the defaults") && r.stdout.contains("0.0.0.0:7467"), "{}", r.describe());
    configure(&a, "[backup]\npaths = [\"/srv\"]\n[keep]\ndaily = 7\n");
    let r = a.run(["--json", "config"]).ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["backup"]["schedule"], "daily 02:30");
    assert_eq!(v["prune"]["schedule"], "daily 04:00");
    assert_eq!(v["keep"]["daily"], 7);

    for (text, expect) in [
        ("[backup]\npaths = [\"/srv\"]\nschedule = \"daily 25:61\"\n", "line 3: bad time"),
        ("[serve]\nlisten = [\"0.0.0.0:7467\"]\nquota = \"lots\"\n", "line 3: bad size"),
        ("\n[backup]\npaths = [\"srv\"]\n", "line 3: backup path \"srv\" is not absolute"),
        ("[backup]\nschedul = \"hourly\"\n", "line 2: unknown field `schedul`"),
    ] {
        configure(&a, text);
        let r = a.run(["config"]).code_is(1);
        assert!(r.stderr.contains(expect), "expected {expect:?}\n{}", r.describe());
        // The daemon refuses to start on it, with the same words.
        let r = a.run(["daemon", "--listen", "127.0.0.1:0"]).code_is(1);
        assert!(r.stderr.contains(expect), "expected {expect:?}\n{}", r.describe());
    }
    let missing = tmp.path().join("nope.toml");
    let r = a.run([OsStr::new("config"), OsStr::new("--config"), missing.as_os_str()]).code_is(1);
    assert!(r.stderr.contains("cannot read it"), "{}", r.describe());
}

/// Runs `args` with its stdout closed before it writes; it must exit 0 and
/// say nothing.
fn closed_pipe_is_quiet(b: &TestBox, args: &[&str]) {
    let mut cmd = b.cmd(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?} on a closed pipe: {stderr}");
    assert!(stderr.is_empty(), "{args:?} on a closed pipe printed: {stderr}");
}

#[test]
fn a_closed_pipe_ends_commands_quietly_with_or_without_a_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 8, 4);
    let a = TestBox::init(tmp.path().join("A"));
    for _ in 0..3 {
        a.backup(&src);
    }
    for args in [&["snapshots"][..], &["stats"], &["ls", "latest"], &["--json", "snapshots"]] {
        closed_pipe_is_quiet(&a, args);
    }
    let _daemon = Daemon::start(&a, "A", &["--listen", "127.0.0.1:0"]);
    for args in [&["snapshots"][..], &["stats"], &["ls", "latest"], &["--json", "snapshots"]] {
        closed_pipe_is_quiet(&a, args);
    }
    // And the daemon is unharmed.
    a.check_read_data();
}

#[test]
fn shipping_left_pending_resumes_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 16, 5);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let b_addr = free_addr();
    // A pairs with B (B answers just for that), then B is down.
    buddy::pair_offline(&a, &b, &b_addr);
    configure(
        &a,
        &format!("buddies = [\"{b_addr}\"]\n[backup]\npaths = [{}]\nschedule = \"every 1h\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\n", q(&src)),
    );
    // B is down: A's backup is saved, shipping fails and waits for a retry.
    let daemon = Daemon::start(&a, "A", &[]);
    a.backup(&src);
    // The failure is published first and its retry time a moment later, by
    // the scheduler's next pass; wait for both.
    let s = Daemon::wait_status(&a, 60, "a failed shipping with a retry scheduled", |s| {
        s["last_result"]["ship"]["ok"] == false && s["next_run"]["ship"].is_string()
    });
    assert_eq!(s["shipping_pending"][0], b_addr.as_str(), "{s:#}");
    // The buddy list is the daemon's; adding a buddy that does not answer
    // fails there and adds nothing.
    let r = a.run(["buddy", "list"]).ok();
    assert!(r.stdout.contains(&b_addr) && !r.stdout.contains("not yet pinned"), "{}", r.describe());
    let r = a.run(["buddy", "add", "127.0.0.1:1"]).code_is(1);
    assert!(r.stderr.contains("nothing was added"), "{}", r.describe());
    assert!(!a.run(["buddy", "list"]).ok().stdout.contains("127.0.0.1:1"));
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));

    // B comes up; A restarts and ships what was pending, without being asked.
    let _b_daemon = Daemon::start(&b, "B", &["--listen", &b_addr]);
    let _daemon = Daemon::start(&a, "A", &[]);
    let s = Daemon::wait_status(&a, 60, "the resumed shipping", |s| s["last_result"]["ship"]["ok"] == true);
    assert_eq!(s["shipping_pending"].as_array().map(Vec::len), Some(0), "{s:#}");
    let target = tmp.path().join("restore");
    restore_from_buddy(&a, &b_addr, &target);
    assert_tree_matches(&manifest(&src), &restored_path(&target, &src), "restored from B after the resumed shipping");
}

#[test]
fn sigterm_during_a_scheduled_backup_stops_in_time_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    for i in 0..40 {
        write_random(&src.join(format!("big/f{i}.bin")), rng.gen_range(2_000_000..4_000_000), &mut rng);
    }
    let a = TestBox::init(tmp.path().join("A"));
    configure(
        &a,
        &format!("[backup]\npaths = [{}]\nschedule = \"every 1s\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\n", q(&src)),
    );
    let daemon = Daemon::start(&a, "A", &["--threads", "1"]);
    wait_for(60, "the scheduled backup to start", || daemon.logged("backup started"));
    let (code, took) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    a.check_read_data();

    // The next run finishes the job: its restore is exact.
    let daemon = Daemon::start(&a, "A", &[]);
    wait_for(120, "a finished scheduled backup", || daemon.logged("backup done"));
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
    a.check_read_data();
    let target = tmp.path().join("restore");
    a.restore("latest", &target);
    assert_tree_matches(&manifest(&src), &restored_path(&target, &src), "after a SIGTERM mid-backup");
}

#[test]
fn the_control_socket_is_private_and_bounded() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;

    let tmp = tempfile::tempdir().unwrap();
    let a = TestBox::init(tmp.path().join("A"));
    let _daemon = Daemon::start(&a, "A", &["--listen", "127.0.0.1:0"]);
    let sock = a.data.join("control.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only socket, got {mode:o}");

    let answer = |payload: &[u8]| -> serde_json::Value {
        let mut s = UnixStream::connect(&sock).unwrap();
        // The daemon may answer and close before reading everything.
        let _ = s.write_all(payload);
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    for junk in [&b"not json\n"[..], b"{\"op\":\"run\",\"request\":{\"command\":\"format_disk\"}}\n"] {
        let v = answer(junk);
        assert_eq!(v["done"]["exit"], 1, "{v}");
        assert!(v["done"]["error"].as_str().unwrap().contains("bad request"), "{v}");
    }
    // A request line longer than the 1 MiB limit is cut off and refused.
    let v = answer(&vec![b'x'; 3 << 20]);
    assert_eq!(v["done"]["exit"], 1, "{v}");
    // A client that says nothing does not hold anything up.
    let _silent = UnixStream::connect(&sock).unwrap();
    let s = Daemon::status(&a);
    assert_eq!(s["stopping"], false);
    a.run(["snapshots"]).ok();
}

/// The admitted clients of `b`, as `clients list --json` prints them.
fn clients(b: &TestBox) -> Vec<serde_json::Value> {
    b.run(["--json", "clients", "list"]).ok().json_lines()
}

#[test]
fn buddy_and_clients_commands_run_in_the_daemons_that_hold_both_boxes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 8, 7);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let b_addr = free_addr();
    let a_daemon = Daemon::start(&a, "A", &["--listen", "127.0.0.1:0"]);
    let b_daemon = Daemon::start(&b, "B", &["--listen", &b_addr]);
    // Each daemon holds its box: a command that opened the box itself would
    // exit 11 (locked). These all succeed, so they ran in the daemons.
    let code = buddy::invite(&b);
    a.run(["buddy", "add", &b_addr, "--code", &code]).ok();
    wait_for(10, "the requests in the logs", || a_daemon.logged("buddy_add") && b_daemon.logged("buddy_invite"));
    assert!(!a_daemon.logged(&code), "the code stays out of the log");
    let listed = a.run(["--json", "buddy", "list"]).ok().json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["addr"], b_addr.as_str());
    assert!(listed[0]["key"].is_string(), "the buddy's key is pinned: {listed:?}");
    let s = Daemon::status(&a);
    assert_eq!(s["buddies"][0]["addr"], b_addr.as_str(), "the status shows the new buddy at once: {s:#}");

    a.run([OsStr::new("backup"), src.as_os_str()]).ok();
    let c = clients(&b);
    assert_eq!(c.len(), 1, "{c:?}");
    let a_key = c[0]["key"].as_str().unwrap().to_string();
    let box_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.data.join("box.json")).unwrap()).unwrap();
    assert_eq!(box_json["public_key"].as_str(), Some(a_key.as_str()), "the client is A");
    assert!(c[0]["used_bytes"].as_u64().unwrap() > 0, "A's backup was shipped to B: {c:?}");

    b.run(["clients", "quota", &a_key[..12], "123456789"]).ok();
    assert_eq!(clients(&b)[0]["quota_bytes"], 123_456_789);
    let r = b.run(["clients", "quota", "ffffffffffff", "1"]).code_is(1);
    assert!(r.stderr.contains("no admitted client"), "{}", r.describe());

    b.run(["clients", "revoke", &a_key]).ok();
    assert!(clients(&b).is_empty());
    let r = a.run(["sync"]);
    assert_ne!(r.code, Some(0), "a revoked client is refused: {}", r.describe());

    a.run(["buddy", "remove", &b_addr]).ok();
    assert!(a.run(["--json", "buddy", "list"]).ok().json_lines().is_empty());
    let (code, _) = a_daemon.terminate();
    assert_eq!(code, Some(0));
    let (code, _) = b_daemon.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn config_reload_applies_a_valid_file_at_once_and_keeps_the_old_one_on_a_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    tree(&first, 4, 8);
    tree(&second, 4, 9);
    let a = TestBox::init(tmp.path().join("A"));
    configure(
        &a,
        &format!("[backup]\npaths = [{}]\nschedule = \"never\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\n", q(&first)),
    );
    let daemon = Daemon::start(&a, "A", &[]);
    assert!(Daemon::status(&a)["next_run"]["backup"].is_null(), "no backup is scheduled yet");

    // `config reload`: the new schedule and paths apply without a restart.
    configure(
        &a,
        &format!(
            "[backup]\npaths = [{}]\nschedule = \"every 1s\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\ngroup_work_per_sec = \"16 MiB\"\n",
            q(&second)
        ),
    );
    let r = a.run(["config", "reload"]).ok();
    assert!(r.stdout.contains("backup schedule every 1s (was never)"), "{}", r.describe());
    assert!(r.stdout.contains("group work limited to 16777216 bytes a second"), "{}", r.describe());
    assert!(r.stdout.contains(second.to_str().unwrap()), "{}", r.describe());
    Daemon::wait_status(&a, 60, "a backup on the reloaded schedule", |s| s["last_result"]["backup"]["ok"] == true);
    let snaps = a.snapshots();
    assert!(snaps.iter().all(|s| s["paths"][0] == second.to_str().unwrap()), "the new paths are backed up: {snaps:?}");

    // An invalid file is refused with its line and reason, in the command's
    // output and the daemon's log; the schedule in use stays.
    configure(&a, "[backup]\nschedule = \"daily 25:61\"\n");
    let r = a.run(["config", "reload"]).code_is(1);
    assert!(r.stderr.contains("line 2: bad time") && r.stderr.contains("previous one stays"), "{}", r.describe());
    // The log reaches the test through a reader thread: wait for it.
    wait_for(10, "the refusal in the log", || daemon.logged("line 2: bad time"));
    assert!(Daemon::status(&a)["next_run"]["backup"].is_string(), "the old schedule is kept");

    // SIGHUP does the same; a change of the listen address waits for a restart.
    configure(
        &a,
        &format!("[backup]\npaths = [{}]\nschedule = \"never\"\n[serve]\nlisten = [\"127.0.0.1:1\"]\n", q(&second)),
    );
    common::daemon::signal(daemon.child.id(), "HUP");
    Daemon::wait_status(&a, 30, "the SIGHUP reload", |s| s["next_run"]["backup"].is_null());
    wait_for(10, "the reload in the log", || {
        daemon.logged("serve.listen changed in the file: applied at the next start")
    });
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));

    // Without a daemon there is nothing to reload.
    let r = a.run(["config", "reload"]).code_is(1);
    assert!(r.stderr.contains("no daemon runs"), "{}", r.describe());
}
