//! Stack painting: at boot, the free stack (from the end of the statics to
//! a little below the current stack pointer) is filled with a pattern; the
//! high-water mark is how much of it has been overwritten since.

/// The paint.
const PAINT: u32 = 0xC0DE_5AFE;

extern "C" {
    /// Lowest stack address (end of .bss/.uninit), from cortex-m-rt's link.x.
    static mut _stack_end: u32;
    /// Initial stack pointer (top of RAM).
    static mut _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // SAFETY: only the symbols' addresses are taken, never their values.
    (core::ptr::addr_of!(_stack_end) as usize, core::ptr::addr_of!(_stack_start) as usize)
}

/// Paints the unused stack. Call first thing in `main`.
pub fn paint() {
    let (bottom, _) = bounds();
    // Leave 256 bytes below the current frame alone.
    let sp = cortex_m::register::msp::read() as usize - 256;
    let mut p = bottom;
    while p < sp {
        // SAFETY: [bottom, sp) is RAM reserved for the stack and not in use
        // yet (it is below the live frames); word-aligned by link.x.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used since [`paint`] (the high-water mark), and the
/// stack region's size.
pub fn high_water() -> (usize, usize) {
    let (bottom, top) = bounds();
    let mut p = bottom;
    // SAFETY: reads of the stack region, word-aligned.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    (top - p, top - bottom)
}
