#!/usr/bin/env python3
"""Turns one run of `cargo bench --bench peak --bench flash_shapes` (criterion's stdout+stderr in
one log) into docs/results/performance.json and the table of docs/results/performance.md.

    python3 benches/perf_report.py LOG OUT_DIR "load note"

Every number is computed from the log: GFLOP/s is criterion's median throughput (4·N²·d FLOP
per head), the fraction of peak divides by the median of the `fma_peak` case of the backend that
ran (one core; for 2 threads by twice that), and the ratios are taken within the one run."""
import json, re, sys

log, out_dir, note = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(log).read()
unit = {"elem/s": 1e-9, "Kelem/s": 1e-6, "Melem/s": 1e-3, "Gelem/s": 1.0, "Telem/s": 1e3}
cases = {}
name = None
for line in text.splitlines():
    s = line.strip()
    if re.match(r"^[\w.]+/[\w.]+(/[\w.]+)?$", s.split()[0] if s.split() else ""):
        name = s.split()[0]
    m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", s)
    if m and name:
        cases[name] = float(m.group(1)) * unit[m.group(2)]
cpu = re.search(r"CPU: (.*)", text)
backend = re.search(r"backend (\w+), tiles (\d+)x(\d+)", text)
peak = {k.split("/")[1]: v for k, v in cases.items() if k.startswith("fma_peak/")}
be = backend.group(1) if backend else "?"
core_peak = peak.get(be)
rows = []
for k, v in sorted(cases.items()):
    if not k.startswith("flash_"):
        continue
    group, case, threads = k.split("/")
    threads = int(threads)
    frac = v / (core_peak * threads) if core_peak else None
    rows.append({"group": group, "case": case, "threads": threads, "gflops": v, "fraction_of_peak": frac})
for r in rows:
    base = [x for x in rows if x["group"] == r["group"] and x["case"] == "per_row"]
    one = [x for x in rows if x["group"] == r["group"] and x["case"] == "threads" and x["threads"] == 1]
    r["vs_per_row"] = r["gflops"] / base[0]["gflops"] if base else None
    r["vs_1_thread"] = r["gflops"] / one[0]["gflops"] if one and r["case"] == "threads" else None
data = {"cpu": cpu.group(1) if cpu else None, "backend": be, "fma_peak_gflops_per_core": peak,
        "load": note, "cases": rows}
json.dump(data, open(f"{out_dir}/performance.json", "w"), indent=1)
fmt = lambda x, f: "" if x is None else f.format(x)
lines = ["| shape | dtype | kernel | threads | GFLOP/s | fraction of measured peak | vs per-row | vs 1 thread |",
         "|---|---|---|---|---|---|---|---|"]
for r in rows:
    _, dtype, shape = r["group"].split("_", 2)
    kernel = "per-row (before blocking)" if r["case"] == "per_row" else "blocked"
    lines.append(f"| {shape} | {dtype} | {kernel} | {r['threads']} | {r['gflops']:.1f} | "
                 f"{fmt(r['fraction_of_peak'], '{:.0%}')} | {fmt(r['vs_per_row'], '{:.2f}x')} | "
                 f"{fmt(r['vs_1_thread'], '{:.2f}x')} |")
open(f"{out_dir}/performance_table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print("peak:", peak, "cpu:", data["cpu"], "backend:", be)
