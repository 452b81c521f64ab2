//! Exit codes (restic's, where restic has one) and the error that carries one.

use std::fmt;

/// The command did what was asked.
pub const OK: u8 = 0;
/// The command failed.
pub const FAILED: u8 = 1;
/// The backup completed, but some source files could not be read.
pub const PARTIAL: u8 = 3;
/// There is no box in the data directory.
pub const NO_BOX: u8 = 10;
/// Another process holds the box's lock.
pub const LOCKED: u8 = 11;
/// The passphrase is wrong.
pub const WRONG_PASSPHRASE: u8 = 12;

/// An error with a specific exit code; anything else exits with [`FAILED`].
#[derive(Debug)]
pub struct ExitError {
    /// Process exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl ExitError {
    /// An error that exits with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> ExitError {
        ExitError { code, message: message.into() }
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// The exit code for an error chain.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<ExitError>()).map_or(FAILED, |e| e.code)
}
