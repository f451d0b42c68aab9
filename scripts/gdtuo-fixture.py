#!/usr/bin/env python3
"""Record hyperoptimizer trajectories from gdtuo itself, for harness/tests/gdtuo_fixture.rs.

Runs tiny towers of the paper's own implementation (PyPI `gradient-descent-the-ultimate-optimizer`,
module `gdtuo`) in float64 on a fixed logistic-regression problem from a fixed start, and writes
every step's hyperparameters, loss and weights to harness/tests/fixtures/gdtuo.json. The Rust test
reads only that file (CI has no PyTorch).

    python3 scripts/gdtuo-fixture.py            # makes a venv under target/gdtuo-venv, installs, runs
    python3 scripts/gdtuo-fixture.py --no-venv  # uses the current interpreter's torch and gdtuo

The venv gets CPU PyTorch (from PyTorch's CPU wheel index when it is reachable, else the default
index) and gdtuo 1.0.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "harness", "tests", "fixtures", "gdtuo.json")
VENV = os.path.join(ROOT, "target", "gdtuo-venv")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# The problem: logistic regression, 8 examples of 4 features, labels +-1, full batch.
X = [
    [0.9, -0.4, 0.3, 1.0],
    [-0.7, 0.8, -0.2, 1.0],
    [0.2, 0.5, -0.9, 1.0],
    [-0.3, -0.6, 0.7, 1.0],
    [1.1, 0.1, 0.4, 1.0],
    [-0.5, 0.9, 0.6, 1.0],
    [0.4, -1.0, -0.5, 1.0],
    [-1.2, -0.2, 0.1, 1.0],
]
Y = [1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0]
W0 = [0.3, -0.2, 0.1, 0.05]
STEPS = 40

# (name, base, levels above): each level (kind, step size); Adam bases use gdtuo's defaults
# beta1 0.9, beta2 0.999, eps 1e-8.
RUNS = [
    ("SGD/SGD", ("sgd", 0.5), [("sgd", 0.1)]),
    ("SGD/SGD/SGD", ("sgd", 0.5), [("sgd", 0.1), ("sgd", 0.01)]),
    ("Adam/SGD", ("adam", 0.05), [("sgd", 1e-2)]),
    ("Adam/SGD/SGD", ("adam", 0.05), [("sgd", 1e-2), ("sgd", 1e-3)]),
]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    pip = [py, "-m", "pip", "install", "--quiet"]
    try:
        subprocess.check_call(pip + ["--index-url", CPU_INDEX, "torch"], timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        print("CPU wheel index unreachable: installing torch from the default index", flush=True)
        subprocess.check_call(pip + ["torch"])
    subprocess.check_call(pip + ["gradient-descent-the-ultimate-optimizer==1.0"])
    return py


def optimizer(gdtuo, kind, lr, above):
    if kind == "sgd":
        return gdtuo.SGD(lr, optimizer=above)
    return gdtuo.Adam(alpha=lr, optimizer=above)


def run(torch, gdtuo, name, base, levels):
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([W0]))
    x, y = torch.tensor(X), torch.tensor(Y)
    # Build the stack top-down: the top level's optimizer is gdtuo's no-op.
    opt = gdtuo.NoOpOptimizer()
    for kind, lr in reversed(levels):
        opt = optimizer(gdtuo, kind, lr, opt)
    opt = optimizer(gdtuo, base[0], base[1], opt)
    mw = gdtuo.ModuleWrapper(module, optimizer=opt)
    mw.initialize()
    chain = []
    o = opt
    while not isinstance(o, gdtuo.NoOpOptimizer):
        chain.append(o)
        o = o.optimizer
    steps = []
    for t in range(1, STEPS + 1):
        mw.begin()
        margin = y * mw.forward(x).squeeze(1)
        loss = torch.nn.functional.softplus(-margin).mean()
        mw.zero_grad()
        loss.backward(create_graph=True)
        mw.step()
        point = {
            "step": t,
            "loss": loss.item(),
            # The step size of every level (the top's stays fixed), as used at this step.
            "lr": [float(level.parameters["alpha"].item()) for level in chain],
            "w": [float(v) for v in mw.parameters["weight"].detach().reshape(-1).tolist()],
        }
        if isinstance(chain[0], gdtuo.Adam):
            point["beta1"] = float(gdtuo.Adam.clamp(chain[0].parameters["beta1"]).item())
            point["beta2"] = float(gdtuo.Adam.clamp(chain[0].parameters["beta2"]).item())
        steps.append(point)
    return {
        "name": name,
        "base": {"kind": base[0], "lr": base[1]},
        "levels": [{"kind": k, "lr": lr} for k, lr in levels],
        "steps": steps,
    }


def main():
    if "--no-venv" not in sys.argv and os.environ.get("GDTUO_FIXTURE_INNER") != "1":
        py = ensure_venv()
        env = dict(os.environ, GDTUO_FIXTURE_INNER="1")
        sys.exit(subprocess.call([py, os.path.abspath(__file__), "--no-venv"], env=env))
    import torch
    from gradient_descent_the_ultimate_optimizer import gdtuo

    torch.set_default_dtype(torch.float64)
    runs = [run(torch, gdtuo, *r) for r in RUNS]
    fixture = {
        "generator": "scripts/gdtuo-fixture.py",
        "gdtuo": "gradient-descent-the-ultimate-optimizer 1.0",
        "torch": torch.__version__,
        "dtype": "float64",
        "problem": {
            "loss": "mean softplus(-y * (x . w)): logistic regression, full batch",
            "x": X,
            "y": Y,
            "w0": W0,
            "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "v0": "eps (gdtuo)"},
        },
        "runs": runs,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(OUT, ROOT)}: {len(runs)} runs of {STEPS} steps")


if __name__ == "__main__":
    main()
