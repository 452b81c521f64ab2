//! Helpers of the daemon tests (the daemon itself is
//! [`crate::common::daemon::Daemon`]): its configuration file and restores
//! from a buddy.
#![allow(dead_code)]

use std::path::Path;

pub use crate::common::buddy::free_addr;
pub use crate::common::daemon::{wait_for, Daemon};
use crate::common::TestBox;

/// Writes the box's configuration file.
pub fn configure(b: &TestBox, toml: &str) {
    std::fs::write(b.data.join("pastiche.toml"), toml).unwrap();
}

/// A TOML string literal of a path.
pub fn q(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

/// `restore latest --target TARGET --from-buddy ADDR` on `b`, asserting exit 0.
pub fn restore_from_buddy(b: &TestBox, addr: &str, target: &Path) {
    b.run([
        std::ffi::OsStr::new("restore"),
        std::ffi::OsStr::new("latest"),
        std::ffi::OsStr::new("--target"),
        target.as_os_str(),
        std::ffi::OsStr::new("--from-buddy"),
        std::ffi::OsStr::new(addr),
    ])
    .ok();
}
