//! Board code for QEMU's `mps2-an386` (Cortex-M4, LAN9118 at 0x4020_0000):
//! everything that touches hardware or the host. Kept apart from the logic
//! (`pastiche_firmware::logic`), which never sees a register.
//!
//! - [`semihosting`]: ARM semihosting calls (files, clocks, command line).
//! - [`disk`]: the block device over a semihosting host file.
//! - [`lan9118`]: the Ethernet driver, a smoltcp `phy::Device`.
//! - [`no_wscale`]: declines TCP window scaling in received SYNs (loss recovery).
//! - [`clock`]: a monotonic millisecond clock from SysTick.
//! - [`entropy`]: the per-boot random source.
//! - [`log`]: the defmt global logger (to a semihosting file).
//! - [`stack`]: stack painting and the high-water mark.
//! - [`statics`]: the image's large buffers and its NIC, each handed out once.
//! - [`faults`]: the HardFault handler.

pub mod clock;
pub mod disk;
pub mod entropy;
pub mod faults;
pub mod lan9118;
pub mod log;
pub mod no_wscale;
pub mod semihosting;
pub mod stack;
pub mod statics;
