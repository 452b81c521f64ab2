//! Metadata: encrypted objects, the content-addressed tree model, and their storage.

pub mod db;
pub mod log;
pub mod model;
pub mod object;
pub mod tree;
pub mod walk;
