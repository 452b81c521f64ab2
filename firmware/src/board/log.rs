//! The defmt global logger: frames go to a semihosting file (`log=PATH` on
//! the command line) or, by default, to semihosting stdout (`:tt`), one
//! SYS_WRITE per log frame. The host decodes them with the ELF's defmt table
//! (`defmt-print -e ELF`, or `defmt-decoder` in hil-tests).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cortex_m_semihosting::nr::open;

use super::semihosting::{self as sh, Handle};

/// Host handle + 1 (0: not opened yet, logs are dropped).
static HANDLE: AtomicUsize = AtomicUsize::new(0);
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Bytes of one log frame buffered until `release` writes them.
const LINE: usize = 256;

struct Line {
    buf: [u8; LINE],
    len: usize,
}

/// A cell only touched between `acquire` and `release`, inside a critical
/// section and behind `TAKEN`, and each cell by one borrow at a time.
struct Excl<T>(UnsafeCell<T>);
// SAFETY: see `Excl`: access is serialised by the critical section.
unsafe impl<T> Sync for Excl<T> {}

static ENCODER: Excl<defmt::Encoder> = Excl(UnsafeCell::new(defmt::Encoder::new()));
static LINE_BUF: Excl<Line> = Excl(UnsafeCell::new(Line { buf: [0; LINE], len: 0 }));
static RESTORE: Excl<critical_section::RestoreState> = Excl(UnsafeCell::new(critical_section::RestoreState::invalid()));

/// Opens the log target: `path`, or semihosting stdout. Logs before this are dropped.
pub fn init(path: Option<&str>) {
    let h = path.and_then(|p| sh::open(p, open::W_TRUNC_BINARY)).or_else(|| sh::open(":tt", open::W_TRUNC_BINARY));
    if let Some(Handle(raw)) = h {
        HANDLE.store(raw + 1, Ordering::Release);
    }
}

/// Appends encoded bytes to the line buffer (the encoder's output callback).
fn emit(bytes: &[u8]) {
    // SAFETY: called only from the logger between acquire and release; the
    // encoder borrow is a different cell.
    let line = unsafe { &mut *LINE_BUF.0.get() };
    for &b in bytes {
        if line.len == LINE {
            write_out(line);
        }
        line.buf[line.len] = b;
        line.len += 1;
    }
}

fn write_out(line: &mut Line) {
    let h = HANDLE.load(Ordering::Acquire);
    if h != 0 && line.len > 0 {
        sh::write(Handle(h - 1), &line.buf[..line.len]);
    }
    line.len = 0;
}

#[defmt::global_logger]
struct Logger;

// SAFETY: defmt's contract: acquire/release bracket every frame and are not
// re-entered; we enforce it with a critical section and the TAKEN flag.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        // SAFETY: released in `release`.
        let restore = unsafe { critical_section::acquire() };
        if TAKEN.swap(true, Ordering::Relaxed) {
            panic!("defmt logger re-entered");
        }
        // SAFETY: exclusive from here to `release` (critical section, TAKEN).
        unsafe {
            *RESTORE.0.get() = restore;
            (*ENCODER.0.get()).start_frame(emit);
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: between acquire and release.
        unsafe {
            (*ENCODER.0.get()).end_frame(emit);
            write_out(&mut *LINE_BUF.0.get());
        }
        TAKEN.store(false, Ordering::Relaxed);
        // SAFETY: pairs with `acquire`.
        unsafe { critical_section::release(*RESTORE.0.get()) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: between acquire and release.
        unsafe { (*ENCODER.0.get()).write(bytes, emit) };
    }
}

defmt::timestamp!("{=u32:ms}", super::clock::raw_ms());
