#!/usr/bin/env python3
"""Static throughput of the Adam loops: llvm-mca on the AVX2 loop bodies of a bench binary.

    cargo bench -p tessera-benches --bench optim --no-run     # prints the binary's path
    python3 benches/mca_loops.py target/release/deps/optim-<hash> [--mcpu znver3]

Disassembles the binary (objdump), takes every loop (a backward conditional jump and the
instructions it jumps back over) that contains a 256-bit square root or division, and runs
llvm-mca on each body. Per loop it prints: instructions, divisions, square roots, multiplies,
fused multiply-adds, stack accesses (register spills), llvm-mca's cycles per iteration, and the
cycles' worth of work llvm-mca puts on the two pipes that multiply and divide (FP0 + FP1, the
bottleneck of every loop here). One iteration is one 16-lane chunk (two AVX2 registers).

Which loop is which follows from its operation counts (see docs/results/hyperopt-cost.md):
the plain update has 2 divisions and 2 square roots and no fused multiply-add; the lagged pass
4 divisions and 2 square roots; the exact schedule's hypergradient pass 2 and 2 with fused
multiply-adds and no stores to the state. Loops with hundreds of instructions are outer loops.
Needs objdump and llvm-mca (Debian: binutils, llvm); prints a note and exits 0 without them.
"""

import re
import shutil
import subprocess
import sys


def loops(binary):
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", binary],
        check=True, capture_output=True, text=True,
    ).stdout
    ins = []
    for line in text.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            ins.append((int(m.group(1), 16), m.group(2).strip()))
    index = {a: i for i, (a, _) in enumerate(ins)}
    for i, (addr, op) in enumerate(ins):
        m = re.match(r"(j\w+)\s+([0-9a-f]+)", op)
        if not m or m.group(1) == "jmp":
            continue
        target = int(m.group(2), 16)
        if target >= addr or target not in index:
            continue
        body = [re.sub(r"\s*<.*>", "", x) for _, x in ins[index[target]: i + 1]]
        if any(re.match(r"v(sqrt|div)ps\s.*%ymm", b) for b in body):
            yield target, body


def mca(body, mcpu):
    out = subprocess.run(
        ["llvm-mca", f"-mcpu={mcpu}", "-iterations=200", "-resource-pressure",
         "-instruction-info=false", "-timeline=false"],
        input="\n".join(body) + "\n", capture_output=True, text=True, check=True,
    ).stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 200
    names = re.findall(r"\[(\d+(?:\.\d+)?)\]\s+- (\S+)", out)
    columns = [n for _, n in names]
    rows = out.split("Resource pressure per iteration:")[1].splitlines()
    values = rows[2].split()
    fp01 = sum(float(v) for c, v in zip(columns, values)
               if c in ("Zn3FPP0", "Zn3FPP1") and v != "-")
    return cycles, fp01


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    mcpu = sys.argv[sys.argv.index("--mcpu") + 1] if "--mcpu" in sys.argv else "znver3"
    if not (shutil.which("objdump") and shutil.which("llvm-mca")):
        print("objdump or llvm-mca not found: nothing measured")
        return
    print(f"{'loop':>9} {'instr':>5} {'div':>3} {'sqrt':>4} {'mul':>3} {'fma':>3} "
          f"{'spill':>5} {'cycles/iter':>11} {'FP0+FP1':>7}")
    for addr, body in loops(binary):
        count = lambda p: sum(bool(re.match(p, b)) for b in body)
        cycles, fp01 = mca(body, mcpu)
        print(f"{addr:9x} {len(body):5d} {count(r'vdivps'):3d} {count(r'vsqrtps'):4d} "
              f"{count(r'vmulps'):3d} {count(r'vfn?m(add|sub)'):3d} "
              f"{sum('rsp' in b for b in body):5d} {cycles:11.1f} {fp01:7.1f}")


if __name__ == "__main__":
    main()
