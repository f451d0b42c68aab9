//! The programs' panic handler, the no-panic proof both boards link (feature `panic-proof`):
//! it calls a symbol no one defines, so a panic path that survives optimisation makes the link
//! fail. With `find-panics` the handler spins instead, so the program links and
//! `find-panics.sh` can list where the paths are.

#[cfg(not(feature = "find-panics"))]
extern "C" {
    fn tessera_no_panic_proof_a_panic_path_survived() -> !;
}

#[cfg(not(feature = "find-panics"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: never called in a program that links (the symbol does not exist).
    unsafe { tessera_no_panic_proof_a_panic_path_survived() }
}

#[cfg(feature = "find-panics")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
