//! The HardFault handler: log the faulting address over defmt, then halt.
//! (cortex-m-rt requires it to be an `unsafe fn`; it touches nothing but
//! the exception frame it is given.)

use cortex_m_rt::{exception, ExceptionFrame};

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    defmt::error!("hard fault at pc={=u32:#x}", ef.pc());
    loop {
        cortex_m::asm::wfi();
    }
}
