//! A monotonic millisecond clock: SysTick interrupts once a millisecond and
//! bumps a counter; [`Clock::now_ms`] widens it to 64 bits (the 32-bit
//! counter wraps after 49 days; the main loop reads it far more often).

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// The AN386's CPU clock in QEMU (mps2.c: 25 MHz).
pub const CPU_HZ: u32 = 25_000_000;

static TICKS_MS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS_MS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since boot.
pub struct Clock {
    high: u64,
    last: u32,
}

impl Clock {
    /// Starts SysTick at 1 kHz from the processor clock.
    pub fn start(mut syst: SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(CPU_HZ / 1000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock { high: 0, last: 0 }
    }

    /// Milliseconds since [`Clock::start`].
    pub fn now_ms(&mut self) -> u64 {
        let t = TICKS_MS.load(Ordering::Relaxed);
        if t < self.last {
            self.high += 1 << 32;
        }
        self.last = t;
        self.high | t as u64
    }
}

/// The raw millisecond counter (for log timestamps, which cannot borrow the clock).
pub fn raw_ms() -> u32 {
    TICKS_MS.load(Ordering::Relaxed)
}

/// The SysTick current value (25 MHz down-counter): timing jitter for entropy.
pub fn systick_now() -> u32 {
    SYST::get_current()
}
