//! `pastiche debug seal|open`: seal or open a single chunk by hand.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pastiche_core::seal::{raw_sealed_len, MAX_SEALED};
use pastiche_core::{Handle, MAX_CHUNK};

use crate::sealing::{open_into, seal_into};

/// Seals all of `input` as one chunk into `output` (compressed when that
/// helps, as a backup seals it); returns the chunkId.
pub fn seal(input: &Path, output: &Path) -> Result<String> {
    let plain = fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    if plain.len() > MAX_CHUNK {
        bail!("{} is {} bytes; a chunk holds at most {MAX_CHUNK} bytes", input.display(), plain.len());
    }
    let mut sealed = vec![0u8; raw_sealed_len(plain.len())];
    let s = seal_into(&plain, &Handle::of(&plain), &mut sealed);
    fs::write(output, &sealed[..s.len]).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(s.id.to_string())
}

/// Opens the sealed chunk in `input` with `handle` (hex) into `output`.
pub fn open(input: &Path, output: &Path, handle: &str) -> Result<()> {
    let handle: Handle = handle.parse().map_err(|e| anyhow::anyhow!("bad --handle {handle:?}: {e}"))?;
    let sealed = fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    if sealed.len() > MAX_SEALED {
        bail!("{} is {} bytes; a sealed chunk is at most {MAX_SEALED} bytes", input.display(), sealed.len());
    }
    let mut plain = vec![0u8; MAX_CHUNK];
    let n =
        open_into(&sealed, &handle, &mut plain).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
    fs::write(output, &plain[..n]).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
