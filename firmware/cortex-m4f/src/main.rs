//! Tessera's firmware checks on a Cortex-M4F under QEMU (`mps2-an386`): every check prints its
//! checksum beside the host's, the stack it used (painted) and its SysTick count, and the
//! program exits non-zero through semihosting on any mismatch.
//!
//! The panic handler calls a function that does not exist: the program links only if no panic
//! path survives optimisation (the no-panic proof).

#![no_std]
#![no_main]

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hio};
use tessera_firmware_app::stack::Painter;
use tessera_firmware_app::{run_and_compare, Buffers, Platform};

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

struct Board {
    out: hio::HostStream,
    syst: SYST,
    painter: Painter,
}

impl Platform for Board {
    fn out(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    fn paint_stack(&mut self) {
        // SAFETY: the stack pointer of this single-threaded program; the RAM below it is free
        // (the checks run with no interrupt but SysTick, whose frame is far smaller than the
        // 64-byte margin).
        unsafe { self.painter.paint(cortex_m::register::msp::read() as usize) }
    }

    fn stack_used(&mut self) -> usize {
        // SAFETY: as for `paint_stack`, which the application calls first.
        unsafe { self.painter.used() }
    }

    fn instructions(&mut self) -> u64 {
        // SysTick counts down from 2^24 - 1 at the processor clock; the exception counts wraps.
        loop {
            let before = WRAPS.load(Ordering::Acquire);
            let current = SYST::get_current();
            if WRAPS.load(Ordering::Acquire) == before {
                return (before as u64) << 24 | (0x00ff_ffff - current) as u64;
            }
        }
    }
}

#[entry]
fn main() -> ! {
    let Some(p) = cortex_m::Peripherals::take() else {
        debug::exit(debug::EXIT_FAILURE);
        loop {
            core::hint::spin_loop();
        }
    };
    let mut syst = p.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00ff_ffff);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    let Ok(out) = hio::hstdout() else {
        debug::exit(debug::EXIT_FAILURE);
        loop {
            core::hint::spin_loop();
        }
    };
    let mut board = Board {
        out,
        syst,
        painter: Painter::default(),
    };
    let ok = match Buffers::take() {
        Some(buffers) => run_and_compare(
            &mut board,
            buffers,
            "cortex-m4f",
            "ticks of the 25 MHz SysTick",
        ),
        None => false,
    };
    let _ = writeln!(
        board.out,
        "{}",
        if ok { "all checks passed" } else { "FAILED" }
    );
    let _ = &board.syst;
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        core::hint::spin_loop();
    }
}
