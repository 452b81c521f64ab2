//! Command implementations, one module per command family.

pub mod chunk;
pub mod debug;
pub mod demo;
