//! `pastiche debug seal|open`: seal or open a single chunk by hand.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pastiche_core::seal::{open_into, seal_into, MAX_SEALED, TAG_LEN};
use pastiche_core::{Handle, MAX_CHUNK};

/// Seals all of `input` as one chunk into `output`; returns the chunkId.
pub fn seal(input: &Path, output: &Path) -> Result<String> {
    let plain = fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    if plain.len() > MAX_CHUNK {
        bail!("{} is {} bytes; a chunk holds at most {MAX_CHUNK} bytes", input.display(), plain.len());
    }
    let mut sealed = vec![0u8; plain.len() + TAG_LEN];
    let s = seal_into(&plain, &mut sealed)?;
    fs::write(output, &sealed).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(s.id.to_string())
}

/// Opens the sealed chunk in `input` with `handle` (hex) into `output`.
pub fn open(input: &Path, output: &Path, handle: &str) -> Result<()> {
    let handle: Handle = handle.parse().map_err(|e| anyhow::anyhow!("bad --handle {handle:?}: {e}"))?;
    let sealed = fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    if sealed.len() > MAX_SEALED {
        bail!("{} is {} bytes; a sealed chunk is at most {MAX_SEALED} bytes", input.display(), sealed.len());
    }
    let mut plain = vec![0u8; sealed.len().saturating_sub(TAG_LEN)];
    let n =
        open_into(&sealed, &handle, &mut plain).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
    fs::write(output, &plain[..n]).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
