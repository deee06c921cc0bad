"""yoke_cases -- write yoke-case/1 files (../shared/case-format.md) from PyTorch.

Used by the tools/cases_*.py scripts, which run with Debian's PyTorch 1.13:

    /usr/bin/python3 tools/cases_math.py      # writes tests/cases/math_*.json

Each script computes values and gradients with PyTorch and writes them as
case files; the test suite evaluates them with tools/gradcheck, so CI checks
yoke against PyTorch without PyTorch installed.
"""
import json
import os

import torch

CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cases")

_DTYPES = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}


def tensor(x, requires_grad=False):
    """A case tensor: {"dtype", "shape", "data"[, "requires_grad"]}."""
    x = x.detach()
    values = x.reshape(-1).tolist()
    if x.dtype == torch.float32:
        # 9 significant digits round-trip any f32 exactly, in half the text
        values = [float("%.9g" % v) for v in values]
    elif x.dtype == torch.float64:
        values = [float(v) for v in values]
    d = {"dtype": _DTYPES[x.dtype], "shape": list(x.shape), "data": values}
    if requires_grad:
        d["requires_grad"] = True
    return d


def write_case(name, about, tensors, nodes, seeds, values=None, grads=None,
               error=None, tolerance=None, optimizer=None, params=None):
    """Writes tests/cases/<name>.json.

    tensors: {name: (torch tensor, requires_grad)}; nodes: list of node
    dicts as in the case format; seeds: {node: torch tensor}; values, grads,
    params: {name: torch tensor}; error: a category for an invalid case.
    """
    case = {"format": "yoke-case/1", "name": name, "about": about,
            "tensors": {k: tensor(v, rg) for k, (v, rg) in tensors.items()},
            "nodes": nodes,
            "seeds": {k: tensor(v) for k, v in seeds.items()}}
    if optimizer is not None:
        case["optimizer"] = optimizer
    if error is not None:
        case["expected"] = {"error": error}
    else:
        exp = {}
        if values:
            exp["values"] = {k: tensor(v) for k, v in values.items()}
        if grads:
            exp["grads"] = {k: tensor(v) for k, v in grads.items()}
        if params:
            exp["params"] = {k: tensor(v) for k, v in params.items()}
        case["expected"] = exp
    if tolerance is not None:
        case["tolerance"] = tolerance
    os.makedirs(CASES_DIR, exist_ok=True)
    with open(os.path.join(CASES_DIR, name + ".json"), "w") as f:
        f.write(_dumps(case))


def _dumps(obj, depth=0):
    """JSON with one key a line down to the tensors, each tensor on one line
    (as the shared example cases are laid out)."""
    if isinstance(obj, dict) and not ("dtype" in obj and "data" in obj) and depth < 3:
        pad = "  " * (depth + 1)
        items = [pad + json.dumps(k) + ": " + _dumps(v, depth + 1) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}" + ("\n" if depth == 0 else "")
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and depth < 3:
        pad = "  " * (depth + 1)
        return "[\n" + ",\n".join(pad + json.dumps(v) for v in obj) + "\n" + "  " * depth + "]"
    return json.dumps(obj)
