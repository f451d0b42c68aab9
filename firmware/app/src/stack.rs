//! Stack painting: fill the free stack below the caller with a pattern, run a call, find the
//! lowest word it overwrote. The programs supply the stack pointer (an ISA register).

/// Bytes painted below the stack pointer (the checks use much less).
const PAINT: usize = 16 * 1024;
/// Bytes just below the stack pointer left unpainted (the painter's own frame).
const MARGIN: usize = 64;
const PATTERN: u32 = 0xdead_c0de;

/// Where the last painting started.
#[derive(Default)]
pub struct Painter {
    top: usize,
}

impl Painter {
    /// Paints `[sp - 16 KiB, sp - 64)`.
    ///
    /// # Safety
    /// `sp` is the current stack pointer (word aligned), the 16 KiB below it are RAM that no live
    /// frame or interrupt handler uses while the painted call runs, and nothing else runs then.
    #[inline(never)]
    pub unsafe fn paint(&mut self, sp: usize) {
        self.top = sp;
        let mut a = sp - PAINT;
        while a < sp - MARGIN {
            // SAFETY: the caller's contract: free, word-aligned RAM below the stack pointer.
            unsafe { core::ptr::write_volatile(a as *mut u32, PATTERN) };
            a += 4;
        }
    }

    /// Bytes of the painted region overwritten since [`Painter::paint`].
    ///
    /// # Safety
    /// As for [`Painter::paint`], which must have run first.
    pub unsafe fn used(&self) -> usize {
        let mut a = self.top - PAINT;
        // SAFETY: the region `paint` wrote, read back word by word.
        while a < self.top - MARGIN
            && unsafe { core::ptr::read_volatile(a as *const u32) } == PATTERN
        {
            a += 4;
        }
        self.top - a
    }
}
