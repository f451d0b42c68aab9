#!/usr/bin/env python3
"""PyTorch next to tessera's PTX kernels on the same problems, and docs/results/gpu.md.

Run by scripts/gpu-check.sh on the GPU machine after `tessera gpu-check` has written
`gpu-check.json` and, per attention case, `inputs/<case>/{q,k,v}.npy`, `oracle-{f32,bf16}.npy`
(the exact oracle on the sampled rows) and `case.json`. For each case and dtype (f32, bf16) it
times `torch.nn.functional.scaled_dot_product_attention` with each SDPA backend (flash,
efficient, cuDNN, math) and FlashAttention's `flash_attn_func` if installed, and measures each
one's error on the sampled rows against the oracle. Then it writes the Markdown report.

`--self-test` exercises the report writer on made-up numbers (no torch, no numpy, no GPU): the
dry run of scripts/gpu-check.sh uses it.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys

BACKENDS = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]


def time_ms(torch, fn, reps):
    """Median milliseconds of `fn` over `reps` runs (CUDA events), after two warm-up runs."""
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_case(torch, np, case_dir, reps):
    """Every PyTorch kernel on one case, in f32 and bf16: records of time and error."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    meta = json.load(open(os.path.join(case_dir, "case.json")))
    b, h, kvh = meta["batch"], meta["heads"], meta["kv_heads"]
    nq, nk, d = meta["q_len"], meta["kv_len"], meta["head_dim"]
    rows = meta["rows"]
    q32 = torch.from_numpy(np.load(os.path.join(case_dir, "q.npy")))
    k32 = torch.from_numpy(np.load(os.path.join(case_dir, "k.npy")))[:, :, :nk, :]
    v32 = torch.from_numpy(np.load(os.path.join(case_dir, "v.npy")))[:, :, :nk, :]
    # tessera's causal rows are the last positions; with q_len == 1 that is "every key".
    causal = bool(meta["causal"]) and nq > 1
    mask = None
    if causal and nq != nk:
        i = torch.arange(nq).unsqueeze(1)
        j = torch.arange(nk).unsqueeze(0)
        mask = (j <= i + (nk - nq)).cuda()
        causal = False
    out = []
    for dtype_name, dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        exact = np.load(os.path.join(case_dir, f"oracle-{dtype_name}.npy"))
        q, k, v = (x.to(dtype).cuda().contiguous() for x in (q32, k32, v32))
        if kvh != h:
            k_full = k.repeat_interleave(h // kvh, dim=1)
            v_full = v.repeat_interleave(h // kvh, dim=1)
        else:
            k_full, v_full = k, v

        def error_of(o):
            flat = o.float().reshape(b * h * nq, d).cpu().double().numpy()
            got = flat[rows]
            if not np.all(np.isfinite(got)):
                return float("nan")
            return float(np.max(np.abs(got - exact)))

        def record(kernel, fn):
            rec = {"case": meta["case"], "format": dtype_name, "kernel": kernel}
            try:
                o = fn()
                torch.cuda.synchronize()
                rec["max_abs_error"] = error_of(o)
                rec["ms"] = time_ms(torch, fn, reps)
            except Exception as e:  # a backend that does not take this dtype/shape
                rec["unsupported"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            out.append(rec)

        for name in BACKENDS:
            backend = getattr(SDPBackend, name, None)
            if backend is None:
                continue

            def sdpa(backend=backend):
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(
                        q, k_full, v_full, attn_mask=mask, is_causal=causal, scale=meta["scale"]
                    )

            record(f"sdpa-{name.lower().replace('_attention', '')}", sdpa)
        try:
            from flash_attn import flash_attn_func  # FlashAttention's own kernel (bf16/fp16 only)
        except Exception:
            flash_attn_func = None
        if flash_attn_func is not None and dtype == torch.bfloat16 and mask is None:
            qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))

            def fa():
                return flash_attn_func(qt, kt, vt, softmax_scale=meta["scale"], causal=causal).transpose(1, 2)

            record("flash-attn", fa)
    return meta, out


def environment(torch):
    env = {"python": platform.python_version(), "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")}
    if torch is not None:
        env.update(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            device=torch.cuda.get_device_name(0),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
        try:
            import flash_attn

            env["flash_attn"] = flash_attn.__version__
        except Exception:
            env["flash_attn"] = None
    return env


def fmt(x, spec):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def write_markdown(path, check, torch_records, env, check_status):
    """docs/results/gpu.md from gpu-check.json and the PyTorch records; every verdict from the data."""
    L = []
    L.append("# The PTX kernels on a GPU (issue 21)")
    L.append("")
    L.append(
        "Written by `scripts/gpu-check.sh` (`tessera gpu-check`, then `scripts/gpu_compare.py`). "
        "Do not edit by hand: rerun the script. How the kernels reach the GPU: [docs/gpu.md](../gpu.md)."
    )
    L.append("")
    L.append(f"- device: {env.get('device') or check.get('device', '?')}; run {env.get('date', '?')}")
    L.append(
        f"- PyTorch {env.get('torch', '—')} (CUDA {env.get('cuda', '—')}), FlashAttention "
        f"{env.get('flash_attn') or 'not installed'}; TF32 matmul {env.get('tf32_matmul', '—')}, "
        f"TF32 cuDNN {env.get('tf32_cudnn', '—')}"
    )
    L.append(f"- tessera PTX: `{check.get('ptx', '?')}`; `tessera gpu-check` exit status {check_status}")
    L.append(
        "- inputs: standard normal, seed as in each record of gpu-check.json; errors are max |out − exact| "
        "over the sampled rows, the exact output from `reference/` (correctly rounded to f64) on the inputs "
        "as each format sees them (bf16: inputs rounded to bf16 first)"
    )
    L.append("")
    att = check.get("attention", [])
    L.append("## Correctness: the PTX kernels against the CPU kernels and the oracle")
    L.append("")
    L.append(
        "`rows = CPU bits`: rows whose every element has the bits of the CPU's generic backend (the GPU "
        "runs the same code). `error / bound`: the largest ratio of a row's error to its a-priori bound "
        "(docs/numerics.md), the bound the CPU kernels are tested against; at most 1 passes."
    )
    L.append("")
    L.append("| case | format | rows = CPU bits | max error vs oracle | error / bound | verdict |")
    L.append("|---|---|---:|---:|---:|---|")
    for r in att:
        ok = r["cpu_rows_bitwise_equal"] == r["cpu_rows"] and r["oracle_rows_within_bound"] == len(r["oracle_rows"])
        L.append(
            f"| {r['case']} | {r['format']} | {r['cpu_rows_bitwise_equal']}/{r['cpu_rows']} | "
            f"{fmt(r['oracle']['max_abs'], '.3e')} | {fmt(r['max_error_over_bound'], '.3f')} | "
            f"{'pass' if ok else 'FAIL'} |"
        )
    f32 = [r for r in att if r["format"] == "f32"]
    if f32:
        worst = max(r["max_error_over_bound"] for r in f32)
        within = all(r["oracle_rows_within_bound"] == len(r["oracle_rows"]) for r in f32)
        L.append("")
        L.append(
            f"f32 within the CPU bound on every sampled row: **{'yes' if within else 'no'}** "
            f"(largest error/bound {worst:.3f})."
        )
    L.append("")
    L.append("| optimizer | parameters | GPU ms | check | verdict |")
    L.append("|---|---:|---:|---|---|")
    for r in check.get("adam", []):
        L.append(
            f"| Adam step (AdamW, t = 3) | {r['n']} | {fmt(r['gpu_ms'], '.3f')} | {r['values_differing']} of "
            f"{r['values_compared']} values differ from the CPU's bits | {'pass' if r['values_differing'] == 0 else 'FAIL'} |"
        )
    for r in check.get("hyper_adam", []):
        L.append(
            f"| hyper-Adam pass (k = 3) | {r['n']} | {fmt(r['gpu_ms'], '.3f')} | sums vs CPU's: diff/bound "
            f"{r['max_diff_over_bound']:.3f} | {'pass' if r['within_bound'] else 'FAIL'} |"
        )
    L.append("")
    L.append("## Time and error next to PyTorch, same problems and dtypes")
    L.append("")
    L.append(
        "Median of timed launches (CUDA events; tessera: after one checked launch, PyTorch: after two warm-up "
        "calls). `tessera` is the PTX flash (prefill) or decode entry point with the f32 accumulator "
        "(`bf16` = bf16 storage, f32 state as FlashAttention-2); `tessera bf16-mma` keeps the paper's bf16 state. "
        "PyTorch's GQA cases repeat K/V per query head before the call."
    )
    L.append("")
    by_case = {}
    for r in att:
        by_case.setdefault((r["case"], "bf16" if r["format"] != "f32" else "f32"), []).append(
            {"kernel": "tessera " + r["format"] if r["format"] == "bf16-mma" else "tessera", "ms": r["gpu_ms"], "max_abs_error": r["oracle"]["max_abs"]}
        )
    for r in torch_records:
        by_case.setdefault((r["case"], r["format"]), []).append(r)
    L.append("| case | dtype | kernel | ms | max error vs oracle | tessera ms / this |")
    L.append("|---|---|---|---:|---:|---:|")
    for (case, dtype), recs in by_case.items():
        base = next((x["ms"] for x in recs if x["kernel"] == "tessera"), None)
        for x in recs:
            if "unsupported" in x:
                L.append(f"| {case} | {dtype} | {x['kernel']} | — | — | unsupported: {x['unsupported'][:80]} |")
                continue
            ratio = base / x["ms"] if base and x.get("ms") else None
            L.append(
                f"| {case} | {dtype} | {x['kernel']} | {fmt(x.get('ms'), '.3f')} | {fmt(x.get('max_abs_error'), '.3e')} | "
                f"{fmt(ratio, '.1f')} |"
            )
    L.append("")
    L.append("## What this does and does not show")
    L.append("")
    L.append(
        "- The PTX kernels run the CPU's generic code, one thread per query row, with no shared-memory tiles "
        "and no tensor cores; `exp` is libm's software routine (the same bits as the CPU). Their time shows what "
        "the same source gives on a GPU, not what a GPU kernel written for it gives: PyTorch's kernels use "
        "tensor cores and tiles in shared memory."
    )
    L.append(
        "- Errors are over the sampled rows only (listed in gpu-check.json); PyTorch's bf16 kernels take bf16 "
        "inputs and write bf16 outputs, as tessera's do."
    )
    L.append("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))


def self_test(md_path):
    check = {
        "device": "dry run (no GPU)",
        "ptx": "target/ptx/tessera-sm_90.ptx",
        "attention": [
            {"case": "prefill-256", "format": fmt_, "gpu_ms": 1.5, "cpu_rows": 256, "cpu_rows_bitwise_equal": 256,
             "oracle_rows": list(range(16)), "oracle_rows_within_bound": 16, "max_error_over_bound": 0.01,
             "oracle": {"max_abs": 1e-7}}
            for fmt_ in ["f32", "bf16", "bf16-mma"]
        ],
        "adam": [{"n": 16384, "gpu_ms": 0.02, "values_differing": 0, "values_compared": 49152}],
        "hyper_adam": [{"n": 16384, "gpu_ms": 0.03, "within_bound": True, "max_diff_over_bound": 0.001}],
    }
    torch_records = [
        {"case": "prefill-256", "format": "bf16", "kernel": "sdpa-flash", "ms": 0.01, "max_abs_error": 2e-3},
        {"case": "prefill-256", "format": "f32", "kernel": "sdpa-flash", "unsupported": "RuntimeError: no kernel"},
        {"case": "prefill-256", "format": "f32", "kernel": "sdpa-math", "ms": 0.05, "max_abs_error": 3e-7},
    ]
    write_markdown(md_path, check, torch_records, {"date": "dry run"}, 0)
    text = open(md_path).read()
    for needle in ["| prefill-256 | f32 | 256/256 |", "f32 within the CPU bound on every sampled row: **yes**",
                   "| sdpa-flash | — | — | unsupported", "| tessera | 1.500 |"]:
        assert needle in text, f"self-test: {needle!r} missing from {md_path}"
    print(f"self-test: wrote {md_path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", help="gpu-check.json of tessera gpu-check")
    ap.add_argument("--check-status", default="?", help="tessera gpu-check's exit status")
    ap.add_argument("--inputs", help="the --inputs-dir of tessera gpu-check")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", help="write PyTorch's records here")
    ap.add_argument("--md", required=True, help="the Markdown report to write")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        self_test(a.md)
        return 0
    if not a.check or not os.path.exists(a.check):
        print(f"error: no gpu-check JSON at {a.check}", file=sys.stderr)
        check = {}
    else:
        check = json.load(open(a.check))
    torch = None
    records = []
    try:
        import numpy as np
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        for name in sorted(os.listdir(a.inputs or ".")):
            case_dir = os.path.join(a.inputs, name)
            if not os.path.exists(os.path.join(case_dir, "case.json")):
                continue
            meta, recs = measure_case(torch, np, case_dir, a.reps)
            records.extend(recs)
            print(f"{name}: {len(recs)} PyTorch runs", file=sys.stderr)
    except Exception as e:
        print(f"error: PyTorch comparison stopped: {type(e).__name__}: {e}", file=sys.stderr)
    env = environment(torch)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"environment": env, "records": records}, f, indent=1)
    write_markdown(a.md, check, records, env, a.check_status)
    print(f"wrote {a.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
