//! Command implementations, one module per command family.

pub mod boxcmd;
pub mod buddycmd;
pub mod chunk;
pub mod clientscmd;
pub mod common;
pub mod debug;
pub mod demo;
