//! The Pastiche appliance: the std host around `pastiche-core`.
//!
//! It owns every byte of I/O: files being backed up, the chunk store on disk,
//! and (later) the network.
//!
//! No `unsafe`: system calls go through `rustix`, `signal-hook` and std.
#![forbid(unsafe_code)]

pub mod audit;
pub mod backup;
pub mod buddy;
pub mod channel;
pub mod check;
pub mod chunk_stream;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod exit;
pub mod fsmeta;
pub mod health;
pub mod http;
pub mod meta;
pub mod overlay;
pub mod progress;
pub mod prune;
pub mod recovery;
pub mod redb_guard;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod sample_tree;
pub mod sealing;
pub mod store;
pub mod sync;
