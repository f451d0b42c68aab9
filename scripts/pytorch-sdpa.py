#!/usr/bin/env python3
"""PyTorch's CPU `scaled_dot_product_attention` on the shapes of benches/peers (issue 18).

Times `torch.nn.functional.scaled_dot_product_attention` on CPU tensors of shape (1, 8, N, d):
prefill 1x8x1024x64, 1x8x4096x64, 1x8x4096x128, causal and not, and decode (one query over 4096
keys, 8 heads, d 64 and 128; not causal: PyTorch's causal mask is aligned top-left, so a causal
one-row query would see one key), in float32 and bfloat16, at each thread count of `--threads`
(`torch.set_num_threads`). Inputs: standard normal, rounded to bf16 (as the Rust bench's are),
drawn from torch's generator with a fixed seed (other draws than the Rust bench's: speed does not
depend on the values). Each case: one warm-up call, then calls until `--min-time` seconds and at
least `--repeats` calls; the median call time is reported.

GFLOP/s counts 4·N²·d per head (half when causal, 4·N·d for decode), as benches/peers does; the
fraction of peak divides by `--peak-gflops` (one core's measured FP32 FMA peak, e.g. from
`cargo bench -p tessera-benches --bench peak`) times the thread count. The SDPA backend that ran
is read from the profiler (the `aten::_scaled_dot_product_*` op the call dispatched to).

Optional dependency, not in CI (`pip install torch numpy`; the plain PyPI wheel runs on CPU).
    python3 scripts/pytorch-sdpa.py [--peak-gflops 116.8] [--threads 1,2] [--out FILE.json]
                                    [--md FILE.md] [--quick]
Exit status 2 on bad arguments or when torch is missing.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# (label, q_len, kv_len, d, causal), the groups of benches/peers/src/lib.rs `cases()`.
CASES = [
    (f"1x8x{n}x{d}", n, n, d, causal)
    for n, d in [(1024, 64), (4096, 64), (4096, 128)]
    for causal in (False, True)
] + [(f"decode_8x4096x{d}", 1, 4096, d, False) for d in (64, 128)]
HEADS = 8


def fail(msg):
    print(f"pytorch-sdpa: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="one core's measured FP32 FMA peak in GFLOP/s (fraction of peak column)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, default=5, help="at least this many timed calls (5)")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="time each case for at least this many seconds (2.0)")
    p.add_argument("--out", default="docs/results/peers-pytorch.json", help="JSON output")
    p.add_argument("--md", default=None, help="also write this Markdown table")
    p.add_argument("--note", default="", help="a note stored with the results (e.g. the load)")
    p.add_argument("--quick", action="store_true", help="N=256 instead of the issue's shapes")
    a = p.parse_args()
    try:
        a.threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        fail(f"--threads must be comma-separated integers, got {a.threads!r}")
    if not a.threads or min(a.threads) < 1:
        fail("--threads: each count must be at least 1")
    if a.peak_gflops is not None and not a.peak_gflops > 0:
        fail(f"--peak-gflops must be positive, got {a.peak_gflops}")
    if a.repeats < 1 or not a.min_time >= 0:
        fail("--repeats must be >= 1 and --min-time >= 0")
    return a


def cpu_description():
    name, flags = None, []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and name is None:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return {"name": name or platform.processor() or "unknown CPU",
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags}


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


def flop(q_len, kv_len, d, causal):
    full = 4 * HEADS * q_len * kv_len * d
    return full // 2 if causal and q_len > 1 else full


def sdpa_backend(torch, F, q, k, v, causal):
    """The aten op one call dispatches to, read from the profiler."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    names = [e.key for e in prof.key_averages()]
    inner = [n for n in names if n.startswith("aten::_scaled_dot_product")
             or n.startswith("aten::_efficient_attention") or n.startswith("aten::_flash_attention")]
    if inner:
        return inner[0].removeprefix("aten::")
    return "math (no fused op: " + ", ".join(n.removeprefix("aten::") for n in names[:4]) + ")"


def time_case(torch, F, q, k, v, causal, repeats, min_time):
    F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main():
    a = parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        fail("torch is not installed (pip install torch; optional, not needed by the Rust build)")
    cases = CASES
    if a.quick:
        cases = [(f"1x8x256x{d}", 256, 256, d, c) for d in (64, 128) for c in (False, True)]
        cases += [(f"decode_8x256x{d}", 1, 256, d, False) for d in (64, 128)]
    before = {"uptime": uptime(), "loadavg": load_average()}
    print(f"pytorch-sdpa: torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; {before['uptime']}", file=sys.stderr)
    gen = torch.Generator().manual_seed(0)
    rows = []
    total = len(cases) * 2 * len(a.threads)
    for label, q_len, kv_len, d, causal in cases:
        base = [torch.randn(1, HEADS, n, d, generator=gen).to(torch.bfloat16)
                for n in (q_len, kv_len, kv_len)]
        for dtype_name, dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
            q, k, v = (x.to(dtype) for x in base)
            backend = sdpa_backend(torch, F, q, k, v, causal)
            for threads in a.threads:
                torch.set_num_threads(threads)
                median, calls = time_case(torch, F, q, k, v, causal, a.repeats, a.min_time)
                gflops = flop(q_len, kv_len, d, causal) / median / 1e9
                frac = gflops / (a.peak_gflops * threads) if a.peak_gflops else None
                rows.append({"shape": label, "dtype": dtype_name, "causal": causal,
                             "threads": threads, "median_s": median, "calls": calls,
                             "gflops": gflops, "fraction_of_peak": frac, "sdpa_op": backend})
                frac_s = f", {frac:.0%} of peak" if frac is not None else ""
                print(f"[{len(rows)}/{total}] {label} {dtype_name} causal={causal} "
                      f"threads={threads}: {gflops:.1f} GFLOP/s{frac_s} ({calls} calls, {backend})",
                      file=sys.stderr)
    after = {"uptime": uptime(), "loadavg": load_average()}
    data = {
        "torch": torch.__version__,
        "cpu": cpu_description(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "peak_gflops_per_core": a.peak_gflops,
        "inputs": "standard normal rounded to bf16, torch generator seed 0",
        "flop": "4*N^2*d per head, half when causal, 4*N*d for decode",
        "timing": f"median of >= {a.repeats} calls and >= {a.min_time} s after one warm-up call",
        "load_before": before, "load_after": after, "note": a.note,
        "cases": rows,
    }
    write_results(data, markdown(data), a.out, a.md, "pytorch-sdpa")


def write_results(data, table, out, md, prog):
    """`data` as JSON to `out`, the Markdown `table` to stdout and (if given) to `md`."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(data, f, indent=1)
    print(table)
    if md:
        with open(md, "w") as f:
            f.write(table)
    print(f"{prog}: wrote {out}" + (f" and {md}" if md else ""), file=sys.stderr)


def markdown(data):
    cpu = data["cpu"]
    lines = [
        "# PyTorch CPU scaled_dot_product_attention on the peers shapes",
        "",
        f"Made by `scripts/pytorch-sdpa.py`: torch {data['torch']} (PyPI wheel), CPU "
        f"{cpu['name']} (avx512f: {cpu['avx512f']}, avx512_bf16: {cpu['avx512_bf16']}), "
        f"torch CPU capability {data['cpu_capability']}. {data['timing']}; inputs "
        f"{data['inputs']}; FLOP {data['flop']}.",
        "",
        f"Load: before `{data['load_before']['uptime']}`, after `{data['load_after']['uptime']}`."
        + (f" {data['note']}" if data["note"] else ""),
        "",
        "| shape | dtype | causal | threads | GFLOP/s | fraction of peak | SDPA op |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in data["cases"]:
        frac = "" if r["fraction_of_peak"] is None else f"{r['fraction_of_peak']:.0%}"
        lines.append(f"| {r['shape']} | {r['dtype']} | {'yes' if r['causal'] else 'no'} | "
                     f"{r['threads']} | {r['gflops']:.1f} | {frac} | `{r['sdpa_op']}` |")
    peak = data["peak_gflops_per_core"]
    lines += ["", "Fraction of peak: GFLOP/s / (threads x " +
              (f"{peak} GFLOP/s, the FP32 FMA peak per core passed as `--peak-gflops`)."
               if peak else "a peak: none was passed).")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
