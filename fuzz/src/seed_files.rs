//! The tests' side of the seed and corpus files: checking a generated seed
//! against the one checked in under `seeds/`, replaying the files a target
//! has, and writing inputs in the targets' formats.

use std::path::Path;

use pastiche_core::wire::{encode_frame, Message, DECODER_BUFFER_LEN, FRAME_HEADER_LEN};

use crate::push_record;

/// Every folder a target's inputs are kept in: the checked-in seeds, and
/// the corpus and crash artifacts of earlier fuzzing runs when present.
pub const ALL: [&str; 3] = ["seeds", "corpus", "artifacts"];

/// Asserts that the committed seed `seeds/TARGET/NAME` is `seed` (the
/// generator's current output), rewriting it first under
/// `PASTICHE_WRITE_SEEDS=1`.
pub fn check_seed(target: &str, name: &str, seed: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target).join(name);
    if std::env::var_os("PASTICHE_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, seed).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(seed),
        "{} is stale: PASTICHE_WRITE_SEEDS=1 cargo test",
        path.display()
    );
}

/// Runs `target_fn` on every file of `target` in each of `folders` (missing
/// folders are skipped: only seeds are checked in); returns how many ran.
pub fn replay(target: &str, folders: &[&str], mut target_fn: impl FnMut(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                target_fn(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
    }
    n
}

/// `messages` as `buddy_session` records, each to be re-signed (tag 1).
pub fn session_input(messages: &[Message<'_>]) -> Vec<u8> {
    let mut input = Vec::new();
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];
    for m in messages {
        let n = encode_frame(m, &mut frame).unwrap();
        push_record(&mut input, 1, &frame[FRAME_HEADER_LEN..n]);
    }
    input
}

/// The digest a `Commit` signs for an epoch that stages `objects` (name,
/// data), `deletes` and `root`, so that a seed's commits are applied.
pub fn staged_digest(objects: &[([u8; 20], &[u8])], deletes: &[[u8; 20]], root: &[u8]) -> [u8; 32] {
    pastiche_core::testing::MemStaging {
        objects: objects.iter().map(|(name, data)| (*name, data.to_vec())).collect(),
        deletes: deletes.iter().copied().collect(),
        root: Some(root.to_vec()),
    }
    .digest()
}

/// A `frame_decoder` seed of one frame fed whole, and the name it is
/// checked in under (`KIND-name`, as `10-offer`).
pub fn frame_seed(message: &Message<'_>) -> (String, Vec<u8>) {
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(message, &mut frame).unwrap();
    let mut seed = vec![255; crate::CONTROL_LEN];
    seed.extend_from_slice(&frame[..n]);
    (format!("{:02}-{:?}", message.kind() as u8, message.kind()).to_lowercase(), seed)
}
