//! The board-independent half of the Pastiche storage-buddy firmware.
//!
//! Everything here is `#![no_std]`, allocation-free and free of `unsafe`,
//! and it knows nothing about the board: it talks to storage through the
//! `embedded-io` `Read + Write + Seek` traits and takes time and randomness
//! as values. So it builds and is unit-tested on the host:
//!
//! ```text
//! cargo test --manifest-path firmware/Cargo.toml --target x86_64-unknown-linux-gnu --lib
//! ```
//!
//! The board code (startup, LAN9118 driver, SysTick clock, semihosting disk,
//! the smoltcp loop) lives in the binary (`src/main.rs`, `src/board/`,
//! `src/net.rs`) and only builds for `thumbv7em-none-eabihf`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod logic;
