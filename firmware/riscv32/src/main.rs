//! Tessera's firmware checks on RV32IMAC under QEMU (`virt`): every check prints its checksum
//! beside the host's, the stack it used (painted) and the instructions it retired (`minstret`,
//! exact under `-icount shift=0`), and the program exits non-zero through semihosting on any
//! mismatch.
//!
//! The panic handler calls a function that does not exist: the program links only if no panic
//! path survives optimisation (the no-panic proof).

#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt::Write;
use riscv_rt::entry;
use tessera_firmware_app::stack::Painter;
use tessera_firmware_app::{run_and_compare, Buffers, Platform};

/// One semihosting call: `op` with argument `arg` (the RISC-V semihosting trap sequence).
fn semihost(op: usize, arg: usize) -> usize {
    let mut ret = op;
    // SAFETY: the semihosting trap sequence (uncompressed, as the specification requires); the
    // host reads only the memory `arg` points to for this `op`.
    unsafe {
        asm!(
            ".balign 16",
            ".option push",
            ".option norvc",
            "slli zero, zero, 0x1f",
            "ebreak",
            "srai zero, zero, 0x7",
            ".option pop",
            inout("a0") ret,
            in("a1") arg,
            options(nostack),
        );
    }
    ret
}

/// SYS_EXIT: stops the emulator with status 0 (ApplicationExit) or 1 (RunTimeErrorUnknown).
fn exit(ok: bool) -> ! {
    semihost(0x18, if ok { 0x20026 } else { 0x20023 });
    loop {
        core::hint::spin_loop();
    }
}

/// Semihosting console output (SYS_WRITE0 of NUL-terminated pieces) as a `fmt::Write`.
struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for piece in s.as_bytes().chunks(63) {
            let mut buf = [0u8; 64];
            buf.iter_mut().zip(piece).for_each(|(d, &c)| *d = c);
            semihost(0x04, buf.as_ptr() as usize);
        }
        Ok(())
    }
}

struct Board {
    out: Out,
    painter: Painter,
}

fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer register; no memory is touched.
    unsafe { asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

impl Platform for Board {
    fn out(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    fn paint_stack(&mut self) {
        // SAFETY: the stack pointer of this single-threaded program; the RAM below it is free
        // (no interrupt is enabled).
        unsafe { self.painter.paint(stack_pointer()) }
    }

    fn stack_used(&mut self) -> usize {
        // SAFETY: as for `paint_stack`, which the application calls first.
        unsafe { self.painter.used() }
    }

    fn instructions(&mut self) -> u64 {
        loop {
            let (hi, lo, hi2): (u32, u32, u32);
            // SAFETY: reads the machine-mode instruction counter; no memory is touched.
            unsafe {
                asm!("csrr {}, minstreth", out(reg) hi, options(nomem, nostack));
                asm!("csrr {}, minstret", out(reg) lo, options(nomem, nostack));
                asm!("csrr {}, minstreth", out(reg) hi2, options(nomem, nostack));
            }
            if hi == hi2 {
                return (hi as u64) << 32 | lo as u64;
            }
        }
    }
}

#[entry]
fn main() -> ! {
    let mut board = Board {
        out: Out,
        painter: Painter::default(),
    };
    let ok = match Buffers::take() {
        Some(buffers) => run_and_compare(&mut board, buffers, "riscv32imac", "instr retired"),
        None => false,
    };
    let _ = writeln!(
        board.out,
        "{}",
        if ok { "all checks passed" } else { "FAILED" }
    );
    exit(ok)
}
