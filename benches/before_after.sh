#!/usr/bin/env bash
# Criterion benches of an earlier revision and of the working tree, side by side in one run.
#
#   benches/before_after.sh REV ROUNDS BENCH [FILTER]
#
# Builds BENCH (attention, decode, optim, ...) at REV in a git worktree under target/ and in this
# tree, then runs ROUNDS rounds, each running both binaries one after the other (the order
# alternates between rounds, so drift of the machine falls on both sides), and prints per case
# the median time of each side and the median, min and max of the per-round ratios after/before.
# This VM's timings drift 10-30% between runs: read the ratios, not one run's times.
set -euo pipefail
rev=${1:?revision}; rounds=${2:?rounds}; bench=${3:?bench}; filter=${4:-}
root=$(git rev-parse --show-toplevel)
cd "$root"
wt="$root/target/before-$(git rev-parse --short "$rev")"
[ -d "$wt" ] || git worktree add -q --detach "$wt" "$rev"
build() { (cd "$1" && cargo bench -p tessera-benches --bench "$bench" --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["bench"]: print(m["executable"])' | tail -1); }
before=$(build "$wt"); after=$(build "$root")
echo "before ($rev): $before"; echo "after (working tree): $after"
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="before after"; else order="after before"; fi
  for side in $order; do
    if [ "$side" = before ]; then bin=$before; dir=$wt; else bin=$after; dir=$root; fi
    (cd "$dir/benches" && "$bin" --bench $filter) > "$out/$side.$r.log" 2>&1
  done
  echo "round $r done" >&2
done
python3 - "$out" "$rounds" <<'EOF'
import re, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
def parse(path):
    res, name = {}, None
    for line in open(path):
        s = line.rstrip("\n")
        head = s.split()[0] if s.split() else ""
        if s and not s.startswith(" ") and "/" in head and not s.startswith(("Benchmarking", "Found", "Warning")):
            name = head
        t = re.search(r"time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]", s)
        if t and name:
            res[name] = float(t.group(3)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}[t.group(4)]
    return res
b = [parse(f"{out}/before.{r}.log") for r in range(1, n + 1)]
a = [parse(f"{out}/after.{r}.log") for r in range(1, n + 1)]
print("| case | before (median) | after (median) | after/before per round: median (min-max) |")
print("|---|---:|---:|---:|")
for name in b[0]:
    rs = sorted(x[name] / y[name] for x, y in zip(a, b) if name in x and name in y)
    if not rs:
        continue
    print(f"| {name} | {statistics.median(y[name] for y in b) * 1e6:.2f} µs | "
          f"{statistics.median(x[name] for x in a) * 1e6:.2f} µs | "
          f"{statistics.median(rs):.3f} ({rs[0]:.3f}-{rs[-1]:.3f}) |")
EOF
