//! Times `attention_row` on random f32 rows: `cargo run --release -p tessera-reference --example
//! row_time [n d]...` (default: 4096 64 and 16384 128).

use std::time::Instant;

use tessera_reference::attention_row;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes are integers"))
        .collect();
    let sizes: Vec<(usize, usize)> = if args.len() >= 2 {
        args.chunks_exact(2).map(|c| (c[0], c[1])).collect()
    } else {
        vec![(4096, 64), (16384, 128)]
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 * 2f64.powi(-53) * 2.0 - 1.0) as f32 as f64
    };
    for (n, d) in sizes {
        let q: Vec<f64> = (0..d).map(|_| 3.0 * random()).collect();
        let keys: Vec<f64> = (0..n * d).map(|_| 3.0 * random()).collect();
        let values: Vec<f64> = (0..n * d).map(|_| random()).collect();
        let scale = 1.0 / (d as f64).sqrt();
        // The first call also builds the exp tables.
        let _ = attention_row(&q, &keys, &values, scale);
        // The fastest of several runs: the least disturbed by other load on the machine.
        let mut fastest = std::time::Duration::MAX;
        let mut checksum = 0.0;
        for _ in 0..7 {
            let start = Instant::now();
            checksum += attention_row(&q, &keys, &values, scale)[0];
            fastest = fastest.min(start.elapsed());
        }
        println!("n={n:6} d={d:4}: {fastest:?} per row, fastest of 7 (checksum {checksum:.6})");
    }
}
