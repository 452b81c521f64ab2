//! ARM semihosting: the debugger (here QEMU, `-semihosting-config
//! enable=on,target=native`) performs file and clock calls for the target.
//! Each call is a `BKPT 0xAB` trap that QEMU services synchronously.

use cortex_m_semihosting::{nr, syscall1};

/// A host file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(pub usize);

/// Opens `path` with a semihosting mode (`nr::open::*`); `None` on failure.
pub fn open(path: &str, mode: usize) -> Option<Handle> {
    // The path must be NUL-terminated.
    let mut buf = [0u8; 256];
    let bytes = path.as_bytes();
    if bytes.len() >= buf.len() {
        return None;
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let args = [buf.as_ptr() as usize, mode, bytes.len()];
    // SAFETY: SYS_OPEN reads `args` and the NUL-terminated path, both live
    // for the call.
    let h = unsafe { syscall1(nr::OPEN, args.as_ptr() as usize) } as isize;
    (h >= 0).then_some(Handle(h as usize))
}

/// Writes all of `data`; returns the bytes NOT written (0 on success).
pub fn write(h: Handle, data: &[u8]) -> usize {
    let args = [h.0, data.as_ptr() as usize, data.len()];
    // SAFETY: SYS_WRITE reads `data.len()` bytes of `data`.
    unsafe { syscall1(nr::WRITE, args.as_ptr() as usize) }
}

/// Reads into `buf`; returns the bytes NOT read (0: filled; `buf.len()`: end of file).
pub fn read(h: Handle, buf: &mut [u8]) -> usize {
    let args = [h.0, buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_READ writes at most `buf.len()` bytes into `buf`.
    unsafe { syscall1(nr::READ, args.as_ptr() as usize) }
}

/// Moves to an absolute byte position; false on failure.
pub fn seek(h: Handle, pos: usize) -> bool {
    let args = [h.0, pos];
    // SAFETY: SYS_SEEK only reads `args`.
    unsafe { syscall1(nr::SEEK, args.as_ptr() as usize) == 0 }
}

/// The file's length, if known.
pub fn flen(h: Handle) -> Option<usize> {
    let args = [h.0];
    // SAFETY: SYS_FLEN only reads `args`.
    let n = unsafe { syscall1(nr::FLEN, args.as_ptr() as usize) } as isize;
    (n >= 0).then_some(n as usize)
}

/// Centiseconds since the program started (SYS_CLOCK).
pub fn clock_cs() -> usize {
    // SAFETY: SYS_CLOCK takes no argument block.
    unsafe { syscall1(nr::CLOCK, 0) }
}

/// Seconds since 1970 on the host (SYS_TIME).
pub fn time_s() -> usize {
    // SAFETY: SYS_TIME takes no argument block.
    unsafe { syscall1(nr::TIME, 0) }
}

/// Copies the command line (QEMU: the image path, then `-append`) into
/// `buf`; returns it as text, empty on failure.
pub fn cmdline(buf: &mut [u8]) -> &str {
    let mut args = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE writes at most `buf.len()` bytes into `buf` and
    // the length into `args[1]`.
    let r = unsafe { syscall1(nr::GET_CMDLINE, args.as_mut_ptr() as usize) };
    if r != 0 {
        return "";
    }
    let n = args[1].min(buf.len());
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}
