//! A buddy's memory does not grow with the number of busy sessions: 16
//! client boxes sync 24 MiB of incompressible data each at once (32 busy
//! sessions, chunks and objects), and the buddy's peak resident memory stays
//! within what its fixed limits allow: the chunk store's index cache and
//! write batch, the `buddy.redb` cache, the server-wide budget of buffered
//! chunks, and each session's fixed buffers.
//!
//! Before the server-wide budget every session could buffer 128 MiB of
//! chunks, and the same run peaked 260 MiB above idle with 16 MiB per box.

mod common;

use std::thread;

use common::buddy::{pair, peak_rss_mib, Server};
use common::{assert_tree_matches, manifest, restored_path, write_random, TestBox};
use rand::SeedableRng;

const BOXES: usize = 16;
const MIB_EACH: usize = 24;
/// What the limits allow above the idle server, in MiB: the chunk
/// store's index cache (64) and write batch (32), the `buddy.redb` cache
/// (16), buffered chunks of all sessions together (16), about 1 of fixed
/// buffers per session (channel records, frames, batched replies: 32), and
/// 64 for the allocator (glibc keeps an arena per busy thread) and the
/// runtime. Buffering each session's uploads whole would need 384 more.
const ALLOWED_GROWTH_MIB: u64 = 64 + 32 + 16 + 16 + 32 + 64;

#[test]
fn thirty_two_busy_sessions_keep_the_buddy_within_its_memory_limits() {
    let work = tempfile::tempdir().unwrap();
    let buddy = TestBox::init(work.path().join("buddy"));
    let server = Server::start(&buddy);
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    let clients: Vec<(TestBox, std::path::PathBuf)> = (0..BOXES)
        .map(|i| {
            let src = work.path().join(format!("src{i}"));
            write_random(&src.join("data.bin"), MIB_EACH << 20, &mut rng);
            let client = TestBox::init(work.path().join(format!("c{i}")));
            client.backup(&src);
            pair(&client, &buddy, &server.addr);
            (client, src)
        })
        .collect();
    let idle = peak_rss_mib(server.pid());

    thread::scope(|s| {
        for (client, _) in &clients {
            s.spawn(move || client.run(["sync"]).ok());
        }
    });
    let peak = peak_rss_mib(server.pid());
    eprintln!("buddy peak RSS: {idle} MiB idle, {peak} MiB after {BOXES} concurrent syncs of {MIB_EACH} MiB");
    assert!(
        peak <= idle + ALLOWED_GROWTH_MIB,
        "the buddy grew from {idle} to {peak} MiB with 32 busy sessions (allowed: {ALLOWED_GROWTH_MIB} MiB more)"
    );

    // Nothing was lost to the early writes: boxes restore exactly from the buddy.
    for (i, (client, src)) in clients.iter().enumerate().step_by(5) {
        let target = work.path().join(format!("restore{i}"));
        client.run(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &server.addr]).ok();
        assert_tree_matches(&manifest(src), &restored_path(&target, src), "restored from the buddy");
    }
}
