//! `tessera characterize` on tiny models (seconds, not minutes): the class times sum to the
//! measured total, every attention call is recorded with the sequence length its place in the
//! model implies, the JSON carries `op_class` and `seconds`, and bad arguments exit with status 2.

use std::collections::BTreeSet;
use std::process::Command;
use tessera_harness::attention::Kernel;
use tessera_harness::characterize::report::{Characterization, SUM_TOLERANCE};
use tessera_harness::characterize::token::TokenConfig;
use tessera_harness::characterize::unet::UnetConfig;
use tessera_harness::characterize::{run, Plan, Task};
use tessera_kernels::attention::FlashTiles;

fn tiny_unet(frames: usize) -> UnetConfig {
    UnetConfig {
        latent: 16,
        latent_channels: 4,
        frames,
        // Wide enough that each timed call outlasts the clock's own cost (a system call).
        channels: vec![96, 192, 192, 192],
        attention: vec![true, true, true, false],
        layers_per_level: 1,
        heads: 2,
        context_len: 7,
        context_dim: 24,
        groups: 8,
        temporal: frames > 1,
        steps: 2,
    }
}

fn tiny_plan(task: Task) -> Plan {
    Plan {
        task,
        quick: true,
        seed: 3,
        kernels: vec![Kernel::Flash, Kernel::Baseline],
        tiles: FlashTiles::new(8, 16),
        unet: Some(tiny_unet(if task == Task::Ttv { 3 } else { 1 })),
        token: (task == Task::Tti).then_some(TokenConfig {
            layers: 2,
            dim: 768,
            heads: 4,
            ffn: 3072,
            image_tokens: 9,
            text_len: 5,
            vocab: 1024,
        }),
    }
}

#[test]
fn tti_records_sum_to_the_total_and_name_every_sequence_length() {
    let plan = tiny_plan(Task::Tti);
    let runs = run(&plan, false).unwrap();
    assert_eq!(runs.len(), 4, "two models x two algorithms");
    for r in &runs {
        let gap = (r.classes_sum_seconds - r.total_seconds).abs() / r.total_seconds;
        eprintln!(
            "{} {}: class sum vs total gap {gap:.4}",
            r.model, r.attention
        );
        assert!(
            gap <= SUM_TOLERANCE,
            "{} {}: gap {gap}",
            r.model,
            r.attention
        );
        assert!(r.classes.iter().all(|c| c.seconds >= 0.0));
    }
    let unet = runs.iter().find(|r| r.model == "sd15_unet").unwrap();
    let spatial: BTreeSet<usize> = unet
        .attention_calls
        .iter()
        .filter(|c| c.key.op_class == "attention_spatial")
        .map(|c| c.key.seq_len)
        .collect();
    // Levels 16², 8², 4² with attention, and the middle block at 2².
    assert_eq!(spatial, BTreeSet::from([256, 64, 16, 4]));
    for c in &unet.attention_calls {
        match c.key.op_class {
            "attention_cross" => assert_eq!(c.key.kv_len, 7),
            "attention_spatial" => assert_eq!(c.key.kv_len, c.key.seq_len),
            other => panic!("unexpected {other} in an image UNet"),
        }
    }
    // Both steps recorded: per level, 1 down stage + 2 up stages (+ 1 mid), twice.
    let calls: u64 = unet
        .attention_calls
        .iter()
        .filter(|c| c.key.op_class == "attention_spatial")
        .map(|c| c.calls)
        .sum();
    assert_eq!(calls, 2 * (3 * 3 + 1));
    let parti = runs.iter().find(|r| r.model == "parti_decoder").unwrap();
    let kv: BTreeSet<usize> = parti
        .attention_calls
        .iter()
        .filter(|c| c.key.op_class == "attention_spatial")
        .map(|c| c.key.kv_len)
        .collect();
    assert_eq!(kv, (1..=9).collect());
    let record = Characterization::new(&plan, runs);
    assert_eq!(record.speedups.len(), 2);
    assert!(record.findings.len() >= 3);
    let json = serde_json::to_value(&record).unwrap();
    let first = &json["runs"][0]["classes"][0];
    assert!(first["op_class"].is_string() && first["seconds"].is_number());
    assert!(json["runs"][0]["attention_calls"][0]["seq_len"].is_number());
    let md = record.markdown("tti_breakdown.svg");
    assert!(md.contains("| conv |") || md.contains(" conv |"));
    assert!(record.bars().to_svg().starts_with("<svg"));
}

#[test]
fn ttv_runs_temporal_attention_over_the_frames_of_every_pixel() {
    let mut plan = tiny_plan(Task::Ttv);
    plan.kernels = vec![Kernel::Flash];
    let runs = run(&plan, false).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    let gap = (r.classes_sum_seconds - r.total_seconds).abs() / r.total_seconds;
    assert!(gap <= SUM_TOLERANCE, "gap {gap}");
    let temporal: Vec<_> = r
        .attention_calls
        .iter()
        .filter(|c| c.key.op_class == "attention_temporal")
        .collect();
    assert!(!temporal.is_empty());
    for c in temporal {
        assert_eq!((c.key.seq_len, c.key.kv_len), (3, 3), "frames");
        assert!(
            [256, 64, 16, 4].contains(&c.key.batch),
            "pixels: {}",
            c.key.batch
        );
    }
    for c in r
        .attention_calls
        .iter()
        .filter(|c| c.key.op_class == "attention_spatial")
    {
        assert_eq!(c.key.batch, 3, "each frame is one sequence");
    }
    let record = Characterization::new(&plan, runs);
    assert!(record.speedups.is_empty(), "one algorithm: no speedup");
    assert!(record.findings[0].paper.contains("temporal"));
}

#[test]
fn bad_arguments_exit_with_status_2() {
    for args in [
        vec!["characterize", "tti2"],
        vec!["characterize", "tti", "--latent", "12"],
        vec!["characterize", "tti", "--latent", "4096"],
        vec!["characterize", "tti", "--frames", "4"],
        vec!["characterize", "ttv", "--tokens", "4"],
        vec!["characterize", "tti", "--flash", "--baseline"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?} gave no message");
    }
}
