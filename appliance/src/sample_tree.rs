//! A generated sample tree for demos and tests: random files, near-copies
//! (an insertion in the middle, to show content-defined chunking at work),
//! text, nested folders and a symlink.

use std::fs;
use std::io;
use std::path::Path;

use rand::{Rng, RngCore, SeedableRng};

/// `len` incompressible bytes, the same for the same `seed`: distinct seeds
/// give data that shares no chunk (for tests and benchmarks).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Writes the sample tree under `root` (created if missing). Deterministic
/// for a given `seed`. Returns the number of regular files written.
pub fn create(root: &Path, seed: u64) -> io::Result<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut files = 0;
    for dir in ["photos/2025", "photos/2026", "documents/taxes", "code/project"] {
        fs::create_dir_all(root.join(dir))?;
    }
    // Incompressible "photos".
    for i in 0..12 {
        let mut data = vec![0u8; rng.gen_range(200_000..3_000_000)];
        rng.fill_bytes(&mut data);
        let year = if i % 2 == 0 { 2025 } else { 2026 };
        fs::write(root.join(format!("photos/{year}/img_{i:04}.jpg")), &data)?;
        files += 1;
        if i % 4 == 0 {
            // An edited copy: a few bytes inserted in the middle.
            let mid = data.len() / 2;
            data.splice(mid..mid, b"edited!".iter().copied());
            fs::write(root.join(format!("photos/{year}/img_{i:04}_edit.jpg")), &data)?;
            files += 1;
        }
    }
    // Text documents sharing paragraphs.
    let paragraphs: Vec<String> = (0..40)
        .map(|p| (0..rng.gen_range(50..400)).map(|w| format!("word{}{} ", p, w % 17)).collect::<String>() + "\n\n")
        .collect();
    for d in 0..30 {
        let text: String =
            (0..rng.gen_range(5..60)).map(|_| paragraphs[rng.gen_range(0..paragraphs.len())].as_str()).collect();
        fs::write(root.join(format!("documents/note_{d:03}.txt")), text)?;
        files += 1;
    }
    fs::write(root.join("documents/taxes/empty.txt"), b"")?;
    files += 1;
    for f in 0..20 {
        let src: String =
            (0..rng.gen_range(10..300)).map(|l| format!("fn item_{f}_{l}() -> u32 {{ {l} }}\n")).collect();
        fs::write(root.join(format!("code/project/mod_{f}.rs")), src)?;
        files += 1;
    }
    let link = root.join("documents/latest-note");
    if fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("note_000.txt", link)?;
    }
    Ok(files)
}
