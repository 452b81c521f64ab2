//! One writer at a time: an advisory `flock` on the box's lock file.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use anyhow::{Context, Result};

use crate::exit::{ExitError, LOCKED};

/// How a command uses the box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Reads only: many may run together (but not beside a writer).
    Shared,
    /// Changes the box: runs alone.
    Exclusive,
}

/// Takes the lock without waiting; the lock lasts as long as the file.
pub fn acquire(dir: &Path, mode: LockMode) -> Result<File> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let op = match mode {
        LockMode::Shared => FlockOperation::NonBlockingLockShared,
        LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    if flock(&file, op).is_err() {
        return Err(ExitError::new(
            LOCKED,
            format!("the box at {} is in use by another pastiche process", dir.display()),
        )
        .into());
    }
    Ok(file)
}
