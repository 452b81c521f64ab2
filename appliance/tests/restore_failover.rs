//! Restore from several buddies at once, with one of them killed halfway.
//!
//! Box A backs up to B and C (real `pastiche serve` processes on loopback),
//! is wiped and recovered from its passphrase and name. Its restore then
//! pulls every chunk from both buddies at once; B is reached through a
//! proxy that cuts every connection once B has sent a quarter of the data
//! and refuses new ones (B dies mid-restore, as far as A can tell). C is
//! reached through a proxy that holds C's answers until B is cut, so B is
//! certain to be serving when it dies however much faster C is. The
//! restore completes from C, exactly: content, modes, mtimes, symlinks and
//! hard links.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::buddy::*;
use common::*;
use rand::{Rng, SeedableRng};

/// A TCP proxy to a buddy that dies once the buddy has sent `cut_after`
/// bytes: every connection is cut and new ones are refused. Until `hold`
/// is set (or [`HOLD_AT_MOST`] has passed), the buddy's answers wait in the
/// proxy.
struct DyingProxy {
    addr: String,
    cut: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

/// How long a proxy holds answers at most (a bound, so a cut that never
/// comes fails the test's assertion instead of hanging it).
const HOLD_AT_MOST: Duration = Duration::from_secs(30);

impl DyingProxy {
    fn start(target: String, cut_after: u64, hold: Option<Arc<AtomicBool>>) -> DyingProxy {
        let started = Instant::now();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, s) = (cut.clone(), sent.clone());
        std::thread::spawn(move || {
            // The listener is dropped (new connections refused) once cut.
            while !c.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let buddy = TcpStream::connect(&target).unwrap();
                open.lock().unwrap().extend([client.try_clone().unwrap(), buddy.try_clone().unwrap()]);
                let (mut from_client, mut to_buddy) = (client.try_clone().unwrap(), buddy.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_buddy);
                    let _ = to_buddy.shutdown(Shutdown::Write);
                });
                let (mut from_buddy, mut to_client) = (buddy, client);
                let (c, s, open, hold) = (c.clone(), s.clone(), open.clone(), hold.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from_buddy.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        while hold.as_ref().is_some_and(|h| !h.load(Ordering::SeqCst))
                            && started.elapsed() < HOLD_AT_MOST
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if c.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if s.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= cut_after {
                            c.store(true, Ordering::SeqCst);
                            for stream in open.lock().unwrap().iter() {
                                let _ = stream.shutdown(Shutdown::Both);
                            }
                            break;
                        }
                    }
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        DyingProxy { addr, cut, sent }
    }
}

/// Files of many sizes, with modes, a symlink, a hard link and distinct mtimes.
fn source_tree(root: &Path) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut total = 0;
    for i in 0..40 {
        let len = if i % 4 == 0 { rng.gen_range(200_000..500_000) } else { rng.gen_range(100..40_000) };
        write_random(&root.join(format!("d{}/f{i}.bin", i % 5)), len, &mut rng);
        total += len as u64;
    }
    chmod(&root.join("d1/f1.bin"), 0o640);
    chmod(&root.join("d2/f2.bin"), 0o755);
    std::os::unix::fs::symlink("../d0/f0.bin", root.join("d3/link-to-f0")).unwrap();
    std::fs::hard_link(root.join("d4/f4.bin"), root.join("d4/f4-hardlink.bin")).unwrap();
    stamp_distinct_mtimes(root, 1_600_000_000);
    total
}

#[test]
fn a_restore_with_one_buddy_killed_halfway_completes_from_the_other_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let total = source_tree(&home);
    let expected = manifest(&home);
    let a = TestBox::init(tmp.path().join("A"));
    let (b, c) = (TestBox::init(tmp.path().join("B")), TestBox::init(tmp.path().join("C")));
    let (sb, sc) = (Server::start(&b), Server::start(&c));
    pair(&a, &b, &sb.addr);
    pair(&a, &c, &sc.addr);
    let r = a.run(["backup", home.to_str().unwrap()]).ok();
    assert_eq!(r.stdout.matches("synced to").count(), 2, "{}", r.describe());

    // A is lost, then recovered from its passphrase and name through B.
    std::fs::remove_dir_all(&a.data).unwrap();
    let name = TestBox::name_for(&a.data);
    a.run(["recover", "--name", &name, "--via", &sb.addr]).ok();

    // B is reached through a proxy that dies within B's first batches; C
    // through one that holds C's answers until then (C may be faster than
    // B, and serve everything before a cut could come).
    let proxy = DyingProxy::start(sb.addr.clone(), (total / 4).min(256 * 1024), None);
    let to_c = DyingProxy::start(sc.addr.clone(), u64::MAX, Some(proxy.cut.clone()));
    let list = a.data.join("buddies.json");
    let text = std::fs::read_to_string(&list).unwrap();
    assert!(text.contains(&sb.addr) && text.contains(&sc.addr), "{text}");
    // Quoted, so one address that is a prefix of another is not touched.
    let quoted = |addr: &str| format!("\"{addr}\"");
    let text = text.replace(&quoted(&sb.addr), &quoted(&proxy.addr)).replace(&quoted(&sc.addr), &quoted(&to_c.addr));
    assert!(text.contains(&quoted(&proxy.addr)) && text.contains(&quoted(&to_c.addr)), "{text}");
    std::fs::write(&list, text).unwrap();

    let target = tmp.path().join("restored");
    let r = a.restore("latest", &target);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(proxy.cut.load(Ordering::SeqCst), "B was cut halfway ({} bytes sent)", proxy.sent.load(Ordering::SeqCst));
    assert!(to_c.sent.load(Ordering::SeqCst) > 0, "C served the rest");
    assert_tree_matches(&expected, &restored_path(&target, &home), "restore with B killed halfway");
}
