//! Metadata: encrypted objects, the version-log model, and their storage.

pub mod db;
pub mod model;
pub mod object;
pub mod walk;
