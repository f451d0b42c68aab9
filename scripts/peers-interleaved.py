#!/usr/bin/env python3
"""Tessera's flash forward and PyTorch's CPU SDPA timed in turns, by thread CPU time (issue 18).

scripts/peers.sh times the peers group by group, minutes apart, by wall clock; on a VM whose speed
drifts between runs (PyTorch's own f32 rate moved 10% between two runs there) a ratio of two
numbers taken minutes apart carries that drift. This script takes the two side by side instead:
for each prefill shape, in each of `--rounds` rounds, f32 then bf16, each as Tessera's best of
`--reps` calls (`benches/examples/flash_cpu_time`, one thread, `FlashTiles::for_shape` tiles, the
best backend) and then PyTorch's best of `--reps` calls (`torch.set_num_threads(1)`, which runs
the op on the calling thread), all by the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`:
time the VM's other guests or our other processes take from the thread is not counted; the
caches still are). Each round gives the ratios Tessera / PyTorch per dtype and Tessera's bf16 /
f32; the report keeps every round's, their minimum and the ratio of the best rates.

Shapes: 1x8x{1024x64, 4096x64, 4096x128}, causal and not, f32 and bf16 (decode is measured by
scripts/peers.sh only). Inputs: standard normal rounded to bf16 on both sides (different draws:
speed does not depend on the values). FLOP: 4·N²·d per head, half when causal.

    cargo build --release -p tessera-benches --example flash_cpu_time
    /path/to/python-with-torch scripts/peers-interleaved.py [--rounds 3] [--reps 10]
        [--quick] [--out docs/results/peers-interleaved.json] [--md docs/results/peers-interleaved.md]

Optional dependency (torch), not in CI. Exit status 2 on bad arguments, a missing torch or a
missing Tessera binary.
"""
import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location("pytorch_sdpa", os.path.join(HERE, "pytorch-sdpa.py"))
SDPA = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(SDPA)


def fail(msg):
    print(f"peers-interleaved: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of Tessera then PyTorch (3)")
    p.add_argument("--reps", type=int, default=10, help="calls per side per round, best kept (10)")
    p.add_argument("--tessera", default="target/release/examples/flash_cpu_time",
                   help="the flash_cpu_time binary")
    p.add_argument("--target", type=float, default=1.2,
                   help="the ratio the verdict counts against (issue 18: 1.2)")
    p.add_argument("--bf16-target", type=float, default=1.6,
                   help="the Tessera bf16 / f32 ratio the verdict counts against (issue 18: 1.6)")
    p.add_argument("--out", default="docs/results/peers-interleaved.json", help="JSON output")
    p.add_argument("--md", default="docs/results/peers-interleaved.md", help="Markdown output")
    p.add_argument("--note", default="", help="a note stored with the results")
    p.add_argument("--quick", action="store_true", help="N=256 instead of the issue's shapes")
    a = p.parse_args()
    if a.rounds < 1 or a.reps < 1:
        fail("--rounds and --reps must be at least 1")
    if not a.target > 0 or not a.bf16_target > 0:
        fail("--target and --bf16-target must be positive")
    if not os.access(a.tessera, os.X_OK):
        fail(f"{a.tessera} is not an executable (cargo build --release -p tessera-benches "
             "--example flash_cpu_time)")
    return a


def tessera(binary, dtype, n, d, causal, reps):
    """Tessera's best GFLOP/s of `reps` calls and the backend that ran."""
    args = [binary, dtype, str(n), str(d), "rule", "rule", str(reps), "best"]
    if causal:
        args.append("causal")
    out = subprocess.run(args, capture_output=True, text=True)
    m = re.search(r"([0-9.]+) GFLOP/s .*backend (\S+?)\)", out.stdout)
    if out.returncode != 0 or not m:
        fail(f"{' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return float(m.group(1)), m.group(2)


def pytorch(torch, F, q, k, v, causal, reps, flop):
    """PyTorch's best GFLOP/s of `reps` calls by the thread's CPU time (after one warm-up)."""
    F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        best = min(best, time.thread_time() - t0)
    return flop / best / 1e9


def main():
    a = parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        fail("torch is not installed (pip install torch; optional, not needed by the Rust build)")
    torch.set_num_threads(1)
    cases = [c for c in SDPA.CASES if c[1] > 1]
    if a.quick:
        cases = [(f"1x8x256x{d}", 256, 256, d, c) for d in (64, 128) for c in (False, True)]
    gen = torch.Generator().manual_seed(0)
    before = SDPA.uptime()
    print(f"peers-interleaved: torch {torch.__version__}; {before}", file=sys.stderr)
    rows, pairs = [], []
    total = len(cases)
    dtypes = [("f32", torch.float32), ("bf16", torch.bfloat16)]
    for label, n, _, d, causal in cases:
        base = [torch.randn(1, SDPA.HEADS, n, d, generator=gen).to(torch.bfloat16)
                for _ in range(3)]
        flop = SDPA.flop(n, n, d, causal)
        inputs = {name: tuple(x.to(dtype) for x in base) for name, dtype in dtypes}
        ops = {name: SDPA.sdpa_backend(torch, F, *inputs[name], causal) for name, _ in dtypes}
        rounds = {name: [] for name, _ in dtypes}
        backend = None
        # Each round: f32 then bf16, each Tessera then PyTorch, so that the four numbers of a
        # round (and the ratios between them) are taken close together.
        for _ in range(a.rounds):
            for name, _ in dtypes:
                t, backend = tessera(a.tessera, name, n, d, causal, a.reps)
                p = pytorch(torch, F, *inputs[name], causal, a.reps, flop)
                rounds[name].append({"tessera_gflops": t, "pytorch_gflops": p, "ratio": t / p})
        for name, _ in dtypes:
            rs = rounds[name]
            best_t = max(r["tessera_gflops"] for r in rs)
            best_p = max(r["pytorch_gflops"] for r in rs)
            ratios = [r["ratio"] for r in rs]
            rows.append({"shape": label, "dtype": name, "causal": causal,
                         "tessera_backend": backend, "sdpa_op": ops[name], "rounds": rs,
                         "tessera_best_gflops": best_t, "pytorch_best_gflops": best_p,
                         "ratio_of_bests": best_t / best_p, "ratio_min": min(ratios),
                         "ratio_median": statistics.median(ratios)})
        per_round = [b["tessera_gflops"] / f["tessera_gflops"]
                     for f, b in zip(rounds["f32"], rounds["bf16"])]
        best = (max(r["tessera_gflops"] for r in rounds["bf16"])
                / max(r["tessera_gflops"] for r in rounds["f32"]))
        pairs.append({"shape": label, "causal": causal, "per_round": per_round,
                      "min": min(per_round), "ratio_of_bests": best})
        print(f"[{len(pairs)}/{total}] {label} causal={causal}: Tessera / PyTorch f32 "
              + " ".join(f"{r['ratio']:.2f}" for r in rounds["f32"]) + ", bf16 "
              + " ".join(f"{r['ratio']:.2f}" for r in rounds["bf16"])
              + "; Tessera bf16 / f32 " + " ".join(f"{r:.2f}" for r in per_round),
              file=sys.stderr)
    data = {
        "torch": torch.__version__,
        "cpu": SDPA.cpu_description(),
        "timing": f"thread CPU time, best of {a.reps} calls per side per round, {a.rounds} "
                  "rounds; each round f32 then bf16, each Tessera then PyTorch; one thread each",
        "tessera": "benches/examples/flash_cpu_time, FlashTiles::for_shape tiles, best backend",
        "inputs": "standard normal rounded to bf16 (different draws on the two sides)",
        "flop": "4*N^2*d per head, half when causal",
        "target": a.target,
        "bf16_target": a.bf16_target,
        "bf16_over_f32": pairs,
        "load_before": before, "load_after": SDPA.uptime(), "note": a.note,
        "cases": rows,
    }
    SDPA.write_results(data, markdown(data), a.out, a.md, "peers-interleaved")


def markdown(data):
    cpu, target = data["cpu"], data["target"]
    cases = data["cases"]
    met_min = sum(c["ratio_min"] >= target for c in cases)
    met_best = sum(c["ratio_of_bests"] >= target for c in cases)
    lines = [
        "# Tessera and PyTorch CPU SDPA, interleaved, by thread CPU time",
        "",
        f"Made by `scripts/peers-interleaved.py`: CPU {cpu['name']} (avx512f: {cpu['avx512f']}, "
        f"avx512_bf16: {cpu['avx512_bf16']}), torch {data['torch']}. {data['timing']}. "
        f"Tessera: {data['tessera']}. Inputs: {data['inputs']}. FLOP: {data['flop']}.",
        "",
        f"Load: before `{data['load_before']}`, after `{data['load_after']}`."
        + (f" {data['note']}" if data["note"] else ""),
        "",
        f"Tessera is at least {target}x PyTorch in **{met_min} of {len(cases)}** cases in every "
        f"round (the per-round minimum), and in {met_best} of {len(cases)} by the ratio of the "
        "best rates.",
        "",
        "| shape | dtype | Tessera GFLOP/s (best) | PyTorch GFLOP/s (best) | ratio of bests "
        "| ratio per round | min |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for c in cases:
        shape = c["shape"] + (" causal" if c["causal"] else "")
        per_round = " / ".join(f"{r['ratio']:.2f}" for r in c["rounds"])
        lines.append(f"| {shape} | {c['dtype']} | {c['tessera_best_gflops']:.1f} | "
                     f"{c['pytorch_best_gflops']:.1f} | {c['ratio_of_bests']:.2f}x | "
                     f"{per_round} | {c['ratio_min']:.2f}x |")
    lines.append("")
    ops = sorted({c["sdpa_op"] for c in cases})
    backends = sorted({c["tessera_backend"] for c in cases})
    lines.append(f"PyTorch ran {', '.join(ops)}; Tessera's backend: {', '.join(backends)}.")
    lines.append("")
    pairs, bt = data["bf16_over_f32"], data["bf16_target"]
    lines += [
        "## Tessera's bf16 path against its f32 path (the same rounds)",
        "",
        f"bf16 is at least {bt}x f32 in **{sum(p['min'] >= bt for p in pairs)} of {len(pairs)}** "
        f"shapes in every round, and in {sum(p['ratio_of_bests'] >= bt for p in pairs)} of "
        f"{len(pairs)} by the ratio of the best rates.",
        "",
        "| shape | bf16 / f32 per round | min | ratio of bests |",
        "|---|---|---:|---:|",
    ]
    for p in pairs:
        shape = p["shape"] + (" causal" if p["causal"] else "")
        per_round = " / ".join(f"{r:.2f}" for r in p["per_round"])
        lines.append(f"| {shape} | {per_round} | {p['min']:.2f}x | {p['ratio_of_bests']:.2f}x |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
