#!/usr/bin/env python3
"""Turns one run of benches/peers (its stderr+stdout in one log, and criterion's JSON under
CRITERION_DIR) and one run of scripts/pytorch-sdpa.py (its JSON) into docs/results/peers.json and
docs/results/peers.md: per shape, dtype and mask, Tessera's GFLOP/s beside candle-nn's
`flash_attn`, the two-GEMM attention and PyTorch's CPU SDPA, each with Tessera's throughput
divided by the peer's.

    python3 scripts/peers-report.py LOG CRITERION_DIR PYTORCH_JSON OUT_DIR "load note" [PEAK]

Every number is computed from those files: GFLOP/s is the group's FLOP (criterion's
`throughput.Elements`) over the median of criterion's estimate (`new/estimates.json`); only the
groups this log's run set up are read (older criterion directories are ignored). PEAK, when given,
is one core's FP32 FMA peak in GFLOP/s: fractions divide by it (for one thread); without it,
by the `fma_peak` group of the same run. `peers-report.py --peak LOG CRITERION_DIR` prints that
measured peak (peers.sh hands it to the PyTorch script).
TESSERA_COMMIT (set by peers.sh) names the commit the bench measured.
Exit status 2 on missing or unreadable inputs."""
import glob
import json
import os
import re
import sys


def fail(msg):
    print(f"peers-report: {msg}", file=sys.stderr)
    sys.exit(2)


def measured_peak(text, crit_dir, backend):
    """This run's `fma_peak/<backend>` median in GFLOP/s, if the log shows it ran."""
    if not backend or not re.search(rf"^fma_peak/{backend}\b", text, re.M):
        return None
    d = os.path.join(crit_dir, "fma_peak", backend, "new")
    try:
        b = json.load(open(os.path.join(d, "benchmark.json")))
        est = json.load(open(os.path.join(d, "estimates.json")))
    except (OSError, ValueError):
        return None
    return b["throughput"]["Elements"] / est["median"]["point_estimate"]


if len(sys.argv) == 4 and sys.argv[1] == "--peak":  # peers.sh: the peak for the PyTorch script
    try:
        log_text = open(sys.argv[2]).read()
    except OSError as e:
        fail(str(e))
    be = re.search(r"^tessera backend: (\w+)", log_text, re.M)
    p = measured_peak(log_text, sys.argv[3], be.group(1) if be else None)
    if p is None:
        fail("the log shows no fma_peak group of the backend that ran")
    print(f"{p:.1f}")
    sys.exit(0)
if len(sys.argv) not in (6, 7):
    fail("usage: peers-report.py LOG CRITERION_DIR PYTORCH_JSON OUT_DIR NOTE [PEAK_GFLOPS]\n"
         "       peers-report.py --peak LOG CRITERION_DIR")
log_path, crit_dir, torch_path, out_dir, note = sys.argv[1:6]
try:
    peak = float(sys.argv[6]) if len(sys.argv) == 7 and sys.argv[6] else None
    text = open(log_path).read()
    torch_data = json.load(open(torch_path)) if torch_path and os.path.exists(torch_path) else None
except (OSError, ValueError) as e:
    fail(str(e))

# What the bench printed: CPU, backend, per group the tiles, the output differences, and candle
# groups it did not run.
cpu = re.search(r"^CPU: (.*)$", text, re.M)
backend = re.search(r"^tessera backend: (\w+)", text, re.M)
threads_env = re.findall(r"^((?:RAYON|CANDLE)_NUM_THREADS=\S+ \(.*\))$", text, re.M)
setups = {m.group(1): {"tiles": m.group(2), "diff_candle": m.group(3), "diff_gemm": m.group(4)}
          for m in re.finditer(r"^(\w+): tessera backend \w+, tiles (\d+x\d+); max \|tessera - "
                               r"candle\| (.+?), max \|tessera - gemm\| (\S+)$", text, re.M)}
skipped = set(re.findall(r"^(\w+)/candle: not run", text, re.M))
if not setups:
    fail(f"{log_path} names no group the peers bench set up")
run_peak = measured_peak(text, crit_dir, backend.group(1) if backend else None)
if peak is not None:
    peak_source = (f"{peak} GFLOP/s, one core's FP32 FMA peak passed as PEAK_GFLOPS"
                   + (f" (this run's `fma_peak` measured {run_peak:.1f})" if run_peak else ""))
elif run_peak is not None:
    peak = run_peak
    peak_source = (f"{peak:.1f} GFLOP/s, one core's FP32 FMA peak on the backend that ran, "
                   "measured in this run (group `fma_peak`, as `--bench peak` measures it)")
skipped &= set(setups)  # the bench names every skipped group, also those the filter left out

# Criterion's medians: {(group, function, threads): GFLOP/s}.
gflops, group_flop = {}, {}
for bench in glob.glob(os.path.join(crit_dir, "*", "*", "*", "new", "benchmark.json")):
    b = json.load(open(bench))
    if b["group_id"] not in setups:
        continue
    est = json.load(open(os.path.join(os.path.dirname(bench), "estimates.json")))
    flop = b["throughput"]["Elements"]
    key = (b["group_id"], b["function_id"], int(b["value_str"]))
    gflops[key] = flop / est["median"]["point_estimate"]  # FLOP per ns = GFLOP/s
    group_flop[key] = flop

# The candle-nn the bench was built with, from its lockfile.
lock = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "peers", "Cargo.lock")
m = re.search(r'name = "candle-nn"\nversion = "([^"]+)"', open(lock).read()) if os.path.exists(lock) else None
candle_version = m.group(1) if m else "(version unknown)"

# PyTorch: {(shape, dtype, causal, threads): row}.
torch_rows = {}
if torch_data:
    for r in torch_data["cases"]:
        torch_rows[(r["shape"], r["dtype"], r["causal"], r["threads"])] = r


def parse_group(g):
    dtype, rest = g.split("_", 1)
    causal = rest.endswith("_causal")
    return dtype, rest.removesuffix("_causal"), causal


order = {"1x8x1024x64": 0, "1x8x4096x64": 1, "1x8x4096x128": 2,
         "decode_8x4096x64": 3, "decode_8x4096x128": 4}
rows = []
for g in sorted(setups, key=lambda g: (order.get(parse_group(g)[1], 9), parse_group(g)[2],
                                       parse_group(g)[0] != "f32")):
    dtype, shape, causal = parse_group(g)
    row = {"group": g, "shape": shape, "dtype": dtype, "causal": causal, **setups[g],
           "candle_skipped": g in skipped}
    for t in (1, 2):
        row[f"tessera_{t}"] = gflops.get((g, "tessera", t))
        tr = torch_rows.get((shape, dtype, causal, t))
        row[f"pytorch_{t}"] = tr["gflops"] if tr else None
        if tr:
            row["pytorch_op"] = tr["sdpa_op"]
    row["candle_1"] = gflops.get((g, "candle", 1))
    row["gemm_1"] = gflops.get((g, "gemm", 1))
    if peak and row["tessera_1"]:
        row["tessera_1_fraction_of_peak"] = row["tessera_1"] / peak
    rows.append(row)


def ratio(ours, theirs):
    return ours / theirs if ours and theirs else None


def cell(x, ours, skipped=False):
    if x is None:
        return "not run" if skipped else "–"
    r = ratio(ours, x)
    return f"{x:.1f} ({r:.2f}x)" if r else f"{x:.1f}"


def verdict(rows, t, key, label, want):
    pre = [r for r in rows if not r["shape"].startswith("decode") and r[f"tessera_{t}"] and r[key]]
    dec = [r for r in rows if r["shape"].startswith("decode") and r[f"tessera_{t}"] and r[key]]
    out = []
    if pre:
        rs = [ratio(r[f"tessera_{t}"], r[key]) for r in pre]
        ok = sum(x >= want for x in rs)
        out.append(f"- prefill, {t} thread{'s' if t > 1 else ''}, Tessera / {label}: "
                   f"{min(rs):.2f}x to {max(rs):.2f}x over {len(rs)} cases; >= {want}x in "
                   f"{ok} of {len(rs)}.")
    if dec:
        rs = [ratio(r[f"tessera_{t}"], r[key]) for r in dec]
        ahead = sum(x > 1 for x in rs)
        out.append(f"- decode, {t} thread{'s' if t > 1 else ''}, Tessera / {label}: "
                   f"{min(rs):.2f}x to {max(rs):.2f}x over {len(rs)} cases; ahead in "
                   f"{ahead} of {len(rs)}.")
    return out


os.makedirs(out_dir, exist_ok=True)
data = {"cpu": cpu.group(1) if cpu else None, "tessera_backend": backend.group(1) if backend else None,
        "peers_threads": threads_env, "peak_gflops_per_core": peak,
        "fma_peak_measured_this_run": run_peak,
        "tessera_commit": os.environ.get("TESSERA_COMMIT") or "(not recorded: run through peers.sh)", "load": note,
        "pytorch": {k: torch_data[k] for k in ("torch", "cpu", "cpu_capability", "load_before",
                                                "load_after", "timing")} if torch_data else None,
        "rows": rows}
json.dump(data, open(os.path.join(out_dir, "peers.json"), "w"), indent=1)

pt = torch_data
lines = [
    "# Tessera beside its peers (issue 18)",
    "",
    f"**{note}**",
    "",
    f"Made by `bash scripts/peers.sh` (benches/peers, then scripts/pytorch-sdpa.py, then "
    f"scripts/peers-report.py) at Tessera commit {data['tessera_commit']}. CPU: {data['cpu']}; Tessera backend `{data['tessera_backend']}`"
    f" with `FlashTiles::for_shape` (tiles per row below); peers pinned to one thread: "
    f"{', '.join(threads_env) or 'not recorded'}.",
    "",
    "Each cell: GFLOP/s (4·N²·d FLOP per head, half when causal, 4·N·d for decode, over the "
    "median time), and in parentheses Tessera's GFLOP/s divided by the peer's (above 1: Tessera "
    "is faster). Tessera, candle and the GEMM attention ran in one criterion group per row on the "
    "same inputs (normal, rounded to bf16; seeds 1, 2, 3); PyTorch ran in its own process "
    + (f"(torch {pt['torch']}, CPU capability {pt['cpu_capability']}, {pt['timing']}; other draws "
       f"of the same distribution)." if pt else "(not run)."),
    "",
    "- **Tessera**: `flash_threaded` (harness), one thread.",
    f"- **candle**: candle-nn {candle_version} `candle_nn::attention::flash_attn` (its CPU flash attention; "
    "`candle_flash_attn` is CUDA-only), f32 or bf16 tensors in its `(B, S, H, D)` layout.",
    "- **GEMM**: `softmax(Q·Kᵀ·scale)·V` per head as two f32 GEMMs (ndarray `general_mat_mul`, "
    "matrixmultiply's kernels, one thread) and a scalar row softmax; bf16 widened to f32 per head "
    "inside the timing; causal computes all N² scores and masks them.",
    "- **PyTorch**: `torch.nn.functional.scaled_dot_product_attention` on CPU, "
    "`torch.set_num_threads(1)` (and 2 in the second table).",
    "",
    "| shape | dtype | causal | tiles | Tessera | candle | GEMM | PyTorch |",
    "|---|---|---|---|---:|---:|---:|---:|",
]
for r in rows:
    t1 = r["tessera_1"]
    frac = f" ({r['tessera_1_fraction_of_peak']:.0%} of peak)" if r.get(
        "tessera_1_fraction_of_peak") else ""
    lines.append(
        f"| {r['shape']} | {r['dtype']} | {'yes' if r['causal'] else 'no'} | {r['tiles']} | "
        f"{'–' if t1 is None else f'{t1:.1f}'}{frac} | {cell(r['candle_1'], t1, r['candle_skipped'])} | "
        f"{cell(r['gemm_1'], t1)} | {cell(r['pytorch_1'], t1)} |")
lines += ["", "Two threads (Tessera's `flash_threaded` with 2 threads; PyTorch "
          "`set_num_threads(2)`):", "",
          "| shape | dtype | causal | Tessera 2 threads | vs its 1 thread | PyTorch 2 threads |",
          "|---|---|---|---:|---:|---:|"]
for r in rows:
    t2 = r["tessera_2"]
    sp = ratio(t2, r["tessera_1"])
    lines.append(f"| {r['shape']} | {r['dtype']} | {'yes' if r['causal'] else 'no'} | "
                 f"{'–' if t2 is None else f'{t2:.1f}'} | {'–' if sp is None else f'{sp:.2f}x'} | "
                 f"{cell(r['pytorch_2'], t2)} |")
lines += ["", "Computed from the table (issue 18's must-show 3 asks >= 1.2x PyTorch on every "
          "prefill case at one thread, decode ahead, >= 1.8x from 2 threads):", ""]
lines += verdict(rows, 1, "pytorch_1", "PyTorch", 1.2)
lines += verdict(rows, 2, "pytorch_2", "PyTorch", 1.2)
lines += verdict(rows, 1, "candle_1", "candle", 1.2)
lines += verdict(rows, 1, "gemm_1", "GEMM", 1.2)
sps = [ratio(r["tessera_2"], r["tessera_1"]) for r in rows if r["tessera_2"] and r["tessera_1"]]
if sps:
    lines.append(f"- Tessera 2 threads / 1 thread: {min(sps):.2f}x to {max(sps):.2f}x; >= 1.8x in "
                 f"{sum(s >= 1.8 for s in sps)} of {len(sps)}.")
if skipped:
    # What running them would take: at least 11 calls (warm-up + 10 samples) per group at the
    # slowest bf16 prefill rate candle showed in this run.
    rates = [r["candle_1"] for r in rows
             if r["dtype"] == "bf16" and r["candle_1"] and not r["shape"].startswith("decode")]
    flops = {g: f for (g, fn, t), f in group_flop.items() if fn == "tessera" and t == 1}
    est = ""
    if rates and all(g in flops for g in skipped):
        mins = sum(11 * flops[g] / (min(rates) * 1e9) for g in skipped) / 60
        est = (f" at this run's slowest candle bf16 prefill rate ({min(rates):.2f} GFLOP/s) they "
               f"would take about {mins:.0f} minutes;")
    lines += ["", f"candle not run: {', '.join(sorted(skipped))} (candle's bf16 dot product is a "
              f"sequential scalar loop:{est} `PEERS_CANDLE_BF16_ALL=1` runs them)."]
lines += ["", "Largest |Tessera − peer| over the outputs (same inputs; a check that every peer "
          "solved the same problem):", "",
          "| group | candle | GEMM |", "|---|---:|---:|"]
lines += [f"| {r['group']} | {r['diff_candle']} | {r['diff_gemm']} |" for r in rows]
if peak:
    lines += ["", f"Fraction of peak: Tessera's GFLOP/s over {peak_source}."]
lines += ["", "Beside issue 18's measurement (shared/design/PERFORMANCE.md: one Zen 4 core, one thread, "
          "PyTorch SDPA f32 79 GFLOP/s at 1x8x1024x64 and 85 at 1x8x4096x128, candle `flash_attn` "
          "7.6 and ~8): that run's candle and PyTorch versions and machine load are not recorded; "
          f"here candle-nn is {candle_version}"
          + (f", torch {pt['torch']}" if pt else "")
          + ", and the GEMM attention is new. On a loaded machine compare the ratios, not "
          "the GFLOP/s."]
if pt:
    lines += ["", f"PyTorch load: before `{pt['load_before']['uptime']}`, after "
              f"`{pt['load_after']['uptime']}`; its own table: [peers-pytorch.md](peers-pytorch.md). "
              "The Rust groups and PyTorch run one after the other, not interleaved: on a shared "
              "machine the load each one saw differs (the uptimes above), and the PyTorch ratios "
              "carry that difference."]
open(os.path.join(out_dir, "peers.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
