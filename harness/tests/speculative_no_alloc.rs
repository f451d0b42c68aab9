//! The decoding loops allocate nothing: every buffer is allocated once up front by the caller.
//! (The kernel crate is `no_std` without `alloc`, so it cannot allocate; this test checks it at
//! run time with a counting global allocator, over full and self-speculative decoding.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::*;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only this test's thread is counted (the test runner's own threads allocate as they like).
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_runs_on_buffers_allocated_up_front() {
    let c = ModelConfig {
        vocab: 13,
        dim: 16,
        layers: 4,
        heads: 4,
        kv_heads: 2,
        ffn_hidden: 40,
        max_seq: 96,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    };
    let params: Vec<f32> = (0..c.param_count().unwrap())
        .map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let w = ModelWeights::new(c, &params).unwrap();
    let prompt = [
        1u32, 5, 7, 2, 9, 3, 3, 1, 0, 4, 6, 8, 11, 12, 10, 2, 5, 7, 1,
    ];
    for attention in [
        AttentionKind::Baseline,
        AttentionKind::Flash(FlashTiles::new(4, 8)),
    ] {
        let mut kv = vec![0.0f32; kv_cache_len(&c).unwrap()];
        let mut scratch = vec![0.0f32; speculative_scratch_len(&c, 4, attention).unwrap()];
        let mut full = vec![0u32; 60];
        let mut spec = vec![0u32; 60];
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        COUNTING.with(|c| c.set(true));
        greedy_decode(&w, &prompt, attention, &mut kv, &mut scratch, &mut full).unwrap();
        let stats = self_speculative_decode(
            &w,
            &prompt,
            2,
            4,
            attention,
            &mut kv,
            &mut scratch,
            &mut spec,
        )
        .unwrap();
        COUNTING.with(|c| c.set(false));
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(after - before, 0, "decoding allocated");
        assert_eq!(full, spec);
        assert!(stats.rounds > 0);
    }
    // The counter works: an allocation on this thread is seen.
    COUNTING.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 10]);
    COUNTING.with(|c| c.set(false));
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > 0 && v.len() == 10);
}
