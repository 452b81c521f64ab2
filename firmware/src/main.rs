//! The Pastiche storage-buddy firmware for a Cortex-M NAS board, as run in
//! QEMU's `mps2-an386`: boots, opens its disk (a host file over
//! semihosting), brings up Ethernet (LAN9118) and TCP/IP (smoltcp), and
//! serves the peer protocol through `pastiche_core::session::BuddySession`,
//! the same machine the Linux appliance runs.
//!
//! Board code is in [`board`] and [`net`]; the logic (chunk store, beacon,
//! configuration) is the host-tested `pastiche_firmware` library.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

// Cargo reads `.cargo/config.toml` from the current directory only, so
// `cargo build --manifest-path firmware/Cargo.toml` from elsewhere targets
// the host: say so once instead of failing on every board item.
#[cfg(not(target_os = "none"))]
compile_error!(
    "pastiche-firmware is a bare-metal image: build it with `--target thumbv7em-none-eabihf` \
     (or from inside firmware/, whose .cargo/config.toml sets it)"
);

#[cfg(target_os = "none")]
include!("image.rs");
