//! A tiny hyperoptimizer study on both schedules and with learning rates alone: every cell trains,
//! the records carry the fields the JSON promises, and the variants are distinct runs from the
//! same start.

use tessera_harness::hyperopt::{run_plan, Plan, Task};
use tessera_kernels::optim::{Learn, Schedule};

fn tiny(schedule: Schedule) -> Plan {
    Plan {
        tasks: vec![Task::Mlp],
        heights: vec![0, 1, 2],
        sgd_lrs: vec![1e-3, 1e-1],
        adam_lrs: vec![1e-4, 1e-2],
        mlp_steps: 60,
        mlp_train: 512,
        mlp_test: 256,
        schedule,
        ..Plan::quick(3)
    }
}

#[test]
fn both_schedules_train_every_cell() {
    let exact = run_plan(&tiny(Schedule::Exact), false).expect("exact study");
    let lagged = run_plan(&tiny(Schedule::Lagged), false).expect("lagged study");
    assert_eq!(exact.len(), 12);
    assert_eq!(lagged.len(), exact.len());
    for (e, l) in exact.iter().zip(&lagged) {
        assert_eq!((e.schedule, l.schedule), ("exact", "lagged"));
        assert_eq!(
            (e.task, e.optimizer, e.height),
            (l.task, l.optimizer, l.height)
        );
        assert_eq!(e.init_lr, l.init_lr);
        assert!(e.final_loss.is_finite() && l.final_loss.is_finite());
        if e.height == 0 {
            // Height 0 is the plain optimizer on both schedules.
            assert_eq!(e.final_loss.to_bits(), l.final_loss.to_bits(), "{e:?}");
        } else {
            // The hyperparameters moved, one step later on the lagged schedule.
            assert_ne!(e.final_lr, e.init_lr);
            assert_ne!(e.final_lr.to_bits(), l.final_lr.to_bits(), "{}", e.tower);
        }
    }
    let json = serde_json::to_value(&lagged).expect("records serialise");
    for key in [
        "task",
        "optimizer",
        "height",
        "init_lr",
        "final_loss",
        "schedule",
    ] {
        assert!(json[0].get(key).is_some(), "JSON record lacks `{key}`");
    }
}

#[test]
fn a_learning_rate_study_learns_only_learning_rates() {
    // `--learn lr`: the same cells; height 0 is the plain optimizer as before, bit for bit; above
    // it every learning rate moves and Adam's betas stay where they started, named `Adam^α`.
    let all = run_plan(&tiny(Schedule::Exact), false).expect("study");
    let plan = Plan {
        learn: Learn::LearningRate,
        ..tiny(Schedule::Exact)
    };
    let lr = run_plan(&plan, false).expect("learning-rate study");
    assert_eq!(lr.len(), all.len());
    for (a, r) in all.iter().zip(&lr) {
        assert_eq!((a.learned, r.learned), ("all", "lr"));
        assert!(r.final_loss.is_finite(), "{}", r.tower);
        if r.height == 0 {
            assert_eq!(
                a.final_loss.to_bits(),
                r.final_loss.to_bits(),
                "{}",
                r.tower
            );
            continue;
        }
        assert_ne!(r.final_lr, r.init_lr, "{}", r.tower);
        if r.optimizer == "Adam" {
            assert!(r.tower.starts_with("Adam^α/"), "{}", r.tower);
            for p in &r.trajectory {
                assert_eq!(
                    p.betas,
                    Some((0.9f32 as f64, 0.999f32 as f64)),
                    "{}",
                    r.tower
                );
            }
        }
    }
    let json = serde_json::to_value(&lr).expect("records serialise");
    assert_eq!(json[0]["learned"], "lr");
}

/// The digits study (the default task): every cell of every seed trains, each record carries
/// its seed and test error, and the summaries are the per-seed spreads' statistics.
#[test]
fn digits_study_runs_every_seed_and_summarises_over_them() {
    use tessera_harness::hyperopt::{spreads, summaries};
    let plan = Plan {
        heights: vec![0, 2],
        sgd_lrs: vec![1e-3, 1e-1],
        adam_lrs: vec![1e-4],
        digits_steps: 30,
        seeds: vec![5, 6, 7],
        ..Plan::quick(5)
    };
    assert_eq!(plan.tasks, vec![Task::Digits]);
    let records = run_plan(&plan, false).expect("digits study");
    assert_eq!(records.len(), plan.cells());
    assert_eq!(records.len(), 2 * 3 * 3);
    for r in &records {
        let e = r.final_error.expect("a classifier has a test error");
        assert!((0.0..=1.0).contains(&e), "{r:?}");
        assert!(plan.seeds.contains(&r.seed));
    }
    // Different seeds are different runs (initial weights and minibatch order).
    let first = &records[0];
    let other = records
        .iter()
        .find(|r| r.tower == first.tower && r.init_lr == first.init_lr && r.seed != first.seed)
        .expect("another seed");
    assert_ne!(first.measured_loss.to_bits(), other.measured_loss.to_bits());
    let per_seed = spreads(&records);
    let sums = summaries(&records);
    assert_eq!(sums.len(), 4, "two optimizers x two heights");
    for s in &sums {
        assert_eq!(s.seeds, 3);
        let mine: Vec<f64> = per_seed
            .iter()
            .filter(|p| (p.task, p.optimizer, p.height) == (s.task, s.optimizer, s.height))
            .map(|p| p.error_range().expect("error spread"))
            .collect();
        let mean = mine.iter().sum::<f64>() / mine.len() as f64;
        let e = s.error_range.expect("error spread over seeds");
        assert!((e.mean - mean).abs() < 1e-12, "{s:?}");
        assert!(e.min <= e.mean && e.mean <= e.max);
    }
}

#[test]
fn a_missing_digits_file_is_a_clear_error() {
    let plan = Plan {
        digits_path: "/nonexistent/digits.csv".into(),
        ..Plan::quick(0)
    };
    let err = run_plan(&plan, false).expect_err("no data, no study");
    let text = format!("{err:#}");
    assert!(
        text.contains("/nonexistent/digits.csv") && text.contains("shared/data/README.md"),
        "{text}"
    );
}
