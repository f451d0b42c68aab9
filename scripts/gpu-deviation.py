#!/usr/bin/env python3
"""Real FlashAttention-2 next to Tessera's `fa2` precision model, against the exact oracle.

For each sequence length and seed this script draws bf16-exact inputs (standard normal, 16 query
rows, N keys, head_dim 64, one head, non-causal: the deviation study's setting), writes them as
float32 .npy, and runs on the *same* tensors:

- `tessera run --kernel reference`: the exact oracle (tessera-reference; each output correctly
  rounded to f64, then written as float32: 2^-24 relative, far below bf16's 2^-8);
- `tessera run --kernel flash --dtype bf16 --block-q 64 --block-k 64`: the `fa2` model (the shipped
  flash kernel on bf16 tensors: S, m, l, O in f32, P rounded to bf16 per tile);
- `tessera run --kernel baseline --dtype bf16`: the `fused` baseline model;
- PyTorch `scaled_dot_product_attention` in bf16 with each backend forced: FLASH_ATTENTION (on a GPU:
  FlashAttention-2's kernel as PyTorch ships it), EFFICIENT_ATTENTION, MATH (which since PyTorch 2.5
  upcasts bf16 inputs to f32 unless `torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)`,
  reported as `fp16_bf16_reduction_math_sdp_allowed`), MATH with reduced precision allowed, and the
  eager expression `softmax(q @ k.T * scale) @ v` on bf16 tensors (the `bf16-ops` model's subject);
- FlashAttention's own `flash_attn_func` if the `flash_attn` package is installed.

It writes JSON and Markdown: docs/results/gpu-deviation.{json,md} by default. Max |out - exact| is
the paper's metric; `equal_to_fa2_model` is the fraction of output elements bit-equal to Tessera's
`fa2` model.

Usage (a GPU machine: PyTorch, no Rust; `tessera` built here and carried):
    python3 scripts/gpu-deviation.py --tessera target/release/tessera [--device cuda]
    python3 scripts/gpu-deviation.py --tessera target/release/tessera --device cpu --quick   # dry run
Exit status 2 on bad arguments or a missing device.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tessera", required=True, help="path to the tessera binary")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--seq-lens", default="256,1024,4096,16384")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="N = 256, 1024 and one seed")
    ap.add_argument("--out-dir", default="docs/results")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"gpu-deviation: needs numpy and torch: {e}", file=sys.stderr)
        sys.exit(2)
    if not os.access(args.tessera, os.X_OK):
        print(f"gpu-deviation: {args.tessera} is not an executable tessera binary", file=sys.stderr)
        sys.exit(2)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-deviation: no CUDA device (use --device cpu for a dry run)", file=sys.stderr)
        sys.exit(2)
    lens = [256, 1024] if args.quick else [int(x) for x in args.seq_lens.split(",")]
    seeds = 1 if args.quick else args.seeds
    if args.seeds < 1 or args.rows < 1 or args.head_dim < 1 or any(n < 1 for n in lens):
        print("gpu-deviation: seeds, rows, head_dim and seq lens must be positive", file=sys.stderr)
        sys.exit(2)
    try:
        import flash_attn  # noqa: F401
        from flash_attn import flash_attn_func
    except ImportError:
        flash_attn_func = None

    dev = torch.device(args.device)
    d, rows = args.head_dim, args.rows
    scale = 1.0 / math.sqrt(d)
    records = []
    missing = set()
    work = tempfile.mkdtemp(prefix="tessera-gpudev-")
    started = time.time()

    def tessera(*argv):
        subprocess.run([args.tessera, *argv], check=True, stdout=subprocess.DEVNULL)

    def sdpa(q, k, v, backend, reduced=None):
        old = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
        if reduced is not None:
            torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(reduced)
        try:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, scale=scale)
        finally:
            torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(old)

    for seed in range(2024, 2024 + seeds):
        for n in lens:
            g = torch.Generator().manual_seed(seed * 1_000_003 + n)
            q = torch.randn(1, 1, rows, d, generator=g).bfloat16()
            k = torch.randn(1, 1, n, d, generator=g).bfloat16()
            v = torch.randn(1, 1, n, d, generator=g).bfloat16()
            paths = {}
            for name, t in [("q", q), ("k", k), ("v", v)]:
                paths[name] = os.path.join(work, f"{name}.npy")
                np.save(paths[name], t.float().numpy())
            io = ["--q", paths["q"], "--k", paths["k"], "--v", paths["v"]]
            outs = {}
            for label, extra in [
                ("exact", ["--kernel", "reference"]),
                ("tessera fa2 (flash, bf16, Br=Bc=64)", ["--kernel", "flash", "--dtype", "bf16", "--block-q", "64", "--block-k", "64"]),
                ("tessera fused (baseline, bf16)", ["--kernel", "baseline", "--dtype", "bf16"]),
            ]:
                path = os.path.join(work, "out.npy")
                tessera("run", *extra, *io, "--out", path)
                outs[label] = torch.from_numpy(np.load(path)).double()
            exact = outs.pop("exact")
            qd, kd, vd = (t.to(dev) for t in (q, k, v))
            runs = {
                "torch sdpa FLASH_ATTENTION": lambda: sdpa(qd, kd, vd, SDPBackend.FLASH_ATTENTION),
                "torch sdpa EFFICIENT_ATTENTION": lambda: sdpa(qd, kd, vd, SDPBackend.EFFICIENT_ATTENTION),
                "torch sdpa MATH (default)": lambda: sdpa(qd, kd, vd, SDPBackend.MATH),
                "torch sdpa MATH (bf16 reduction allowed)": lambda: sdpa(qd, kd, vd, SDPBackend.MATH, True),
                "torch eager softmax(q @ k.T * scale) @ v": lambda: torch.softmax((qd @ kd.transpose(-2, -1)) * scale, dim=-1) @ vd,
            }
            if flash_attn_func is not None and args.device == "cuda":
                runs["flash_attn_func"] = lambda: flash_attn_func(
                    qd.transpose(1, 2), kd.transpose(1, 2), vd.transpose(1, 2), softmax_scale=scale
                ).transpose(1, 2)
            for label, fn in runs.items():
                try:
                    outs[label] = fn().double().cpu()
                except RuntimeError as e:  # a backend this device or dtype lacks
                    missing.add(label)
                    print(f"  {label}: not available ({str(e).splitlines()[0][:120]})", file=sys.stderr)
            fa2 = outs["tessera fa2 (flash, bf16, Br=Bc=64)"]
            for label, out in outs.items():
                records.append({
                    "kernel": label,
                    "seq_len": n,
                    "seed": seed,
                    "head_dim": d,
                    "rows": rows,
                    "device": args.device,
                    "max_abs_dev": (out - exact).abs().max().item(),
                    "mean_abs_dev": (out - exact).abs().mean().item(),
                    "equal_to_fa2_model": (out == fa2).double().mean().item(),
                })
            print(f"gpu-deviation: seed {seed} N={n} done ({time.time() - started:.0f} s)", file=sys.stderr)

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_name()
    meta = {
        "device": device_name,
        "torch": torch.__version__,
        "flash_attn": getattr(sys.modules.get("flash_attn"), "__version__", None),
        "math_sdp_reduction_allowed_by_default": torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed(),
        "seeds": seeds,
        "seq_lens": lens,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    stem = "gpu-deviation" if args.device == "cuda" else "gpu-deviation-cpu-dry-run"
    with open(os.path.join(args.out_dir, stem + ".json"), "w") as f:
        json.dump({"meta": meta, "records": records}, f, indent=1)
    kernels = list(dict.fromkeys(r["kernel"] for r in records))
    lines = [
        f"# {'GPU' if args.device == 'cuda' else 'CPU dry run'}: real kernels next to Tessera's `fa2` model",
        "",
        f"Made by `python3 scripts/gpu-deviation.py --device {args.device}{' --quick' if args.quick else ''}` "
        f"on {device_name}, PyTorch {torch.__version__}. Inputs: standard normal rounded to bf16, "
        f"{rows} query rows over N keys, head_dim {d}, non-causal, {seeds} seed(s); metric: max |out − exact| "
        "(mean over seeds), exact = tessera-reference. `= fa2` is the fraction of output elements "
        "bit-equal to Tessera's `fa2` model on the same tensors.",
        "",
        "| kernel | " + " | ".join(f"N = {n}" for n in lens) + " | = fa2 (all N) |",
        "|---|" + "---:|" * (len(lens) + 1),
    ]
    for kname in kernels:
        cells = []
        for n in lens:
            xs = [r["max_abs_dev"] for r in records if r["kernel"] == kname and r["seq_len"] == n]
            cells.append(f"{sum(xs) / len(xs):.3e}" if xs else "–")
        eq = [r["equal_to_fa2_model"] for r in records if r["kernel"] == kname]
        lines.append(f"| {kname} | " + " | ".join(cells) + f" | {sum(eq) / len(eq):.3f} |")
    lines += [
        "",
        *([f"Not available on this device: {', '.join(sorted(missing))}.", ""] if missing else []),
        f"PyTorch's MATH backend reduces in bf16 by default: {meta['math_sdp_reduction_allowed_by_default']} "
        "(False means it upcasts bf16 inputs to f32 and rounds once at the end).",
    ]
    with open(os.path.join(args.out_dir, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"gpu-deviation: wrote {args.out_dir}/{stem}.{{json,md}}", file=sys.stderr)


if __name__ == "__main__":
    main()
