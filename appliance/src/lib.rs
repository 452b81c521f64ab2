//! The Pastiche appliance: the std host around `pastiche-core`.
//!
//! It owns every byte of I/O: files being backed up, the chunk store on disk,
//! and (later) the network.

pub mod chunk_stream;
pub mod cli;
pub mod pipeline;
pub mod sample_tree;
pub mod store;
