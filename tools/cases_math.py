"""cases_math -- PyTorch reference cases for add/sub/mul/div, sum/mean,
matmul and linear: writes tests/cases/math_*.json (format: case-format.md).

    /usr/bin/python3 tools/cases_math.py

Each valid case builds its graph in PyTorch from the same leaves, seeds the
listed nodes with random tensors (L = sum of value * seed), and records the
node values and the leaves' gradients. Error cases record the category yoke
must report; where PyTorch also rejects the input, the script checks that it
does.
"""
import json

import torch

from yoke_cases import write_case
import yoke_cli

torch.manual_seed(1234)
F64 = torch.float64
F32 = torch.float32


def rand(*shape, dtype=F64, lo=-1.0, hi=1.0):
    """Uniform in [lo, hi); rand(()) is 0-d."""
    if len(shape) == 1 and isinstance(shape[0], tuple):
        shape = shape[0]
    return (torch.rand(tuple(shape), dtype=F64) * (hi - lo) + lo).to(dtype)


def case(name, about, leaves, nodes, compute, seeded, tolerance=None):
    """leaves: {name: (tensor, requires_grad)}; nodes: the case's node list;
    compute(t) -> {node name: torch value} from leaf tensors t; seeded: the
    nodes whose values make up L."""
    t = {k: v.detach().clone().requires_grad_(rg) for k, (v, rg) in leaves.items()}
    values = compute(t)
    seeds = {k: torch.randn(values[k].shape, dtype=F64).to(values[k].dtype)
             for k in seeded}
    loss = sum((values[k] * seeds[k]).sum() for k in seeded)
    loss.backward()
    grads = {k: (t[k].grad if t[k].grad is not None else torch.zeros_like(t[k]))
             for k, (_, rg) in leaves.items() if rg}
    write_case(name, about, leaves, nodes, seeds, values=values, grads=grads,
               tolerance=tolerance)


def error_case(name, about, leaves, nodes, category, torch_call=None):
    """An invalid case; torch_call, when given, must raise in PyTorch too."""
    if torch_call is not None:
        t = {k: v for k, (v, _) in leaves.items()}
        try:
            torch_call(t)
        except (RuntimeError, IndexError):
            pass
        else:
            raise AssertionError(name + ": PyTorch accepted it")
    write_case(name, about, leaves, nodes, {}, error=category)


def node(name, op, inputs, attrs=None):
    d = {"name": name, "op": op, "inputs": inputs}
    if attrs is not None:
        d["attrs"] = attrs
    return d


def binary(name, op, a="a", b="b"):
    return node(name, op, {"input": a, "other": b})


TORCH_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul,
                "div": torch.div}

# ------------------------------------------------------------------ arith


def arith_cases():
    shapes = [
        ("row", (2, 3), (3,)),
        ("stretch_both", (2, 1, 3), (4, 1)),
        ("zero_dim", (), (2, 2)),
        ("middle", (2, 3, 4), (2, 1, 4)),
        ("same", (2, 3), (2, 3)),
    ]
    for label, sa, sb in shapes:
        # div keeps its denominator in [0.5, 2]
        leaves = {"a": (rand(*sa), True), "b": (rand(*sb, lo=0.5, hi=2.0), True)}
        nodes = [binary(op, op) for op in TORCH_BINARY]
        case("math_arith_" + label,
             "add, sub, mul, div of %s and %s (broadcasting)" % (sa, sb),
             leaves, nodes,
             lambda t: {op: f(t["a"], t["b"]) for op, f in TORCH_BINARY.items()},
             list(TORCH_BINARY))

    # the other operand first: b (3) - a (2, 3), b / a
    leaves = {"a": (rand(2, 3, lo=0.5, hi=2.0), True), "b": (rand(3), True)}
    case("math_arith_reversed", "sub and div with the broadcast operand first",
         leaves, [binary("sub", "sub", "b", "a"), binary("div", "div", "b", "a")],
         lambda t: {"sub": t["b"] - t["a"], "div": t["b"] / t["a"]},
         ["sub", "div"])

    # f32, with a constant (no grad) operand
    leaves = {"a": (rand(2, 1, 3, dtype=F32), True),
              "b": (rand(4, 1, dtype=F32, lo=0.5, hi=2.0), False)}
    case("math_arith_f32", "f32 mul and div, b constant", leaves,
         [binary("mul", "mul"), binary("div", "div")],
         lambda t: {"mul": t["a"] * t["b"], "div": t["a"] / t["b"]},
         ["mul", "div"])

    # one leaf on both sides: gradients of both uses add up
    leaves = {"x": (rand(3, 2), True)}
    case("math_arith_same_leaf", "x * x and x - x: both uses add into x's "
         "gradient", leaves,
         [binary("sq", "mul", "x", "x"), binary("zero", "sub", "x", "x")],
         lambda t: {"sq": t["x"] * t["x"], "zero": t["x"] - t["x"]},
         ["sq", "zero"])

    # size-0 dims: the broadcast operand's gradient is zeros
    leaves = {"a": (torch.zeros(0, 3, dtype=F64), True), "b": (rand(3), True)}
    case("math_arith_size_zero", "(0, 3) * (3): empty output, zero gradient "
         "for b", leaves, [binary("mul", "mul")],
         lambda t: {"mul": t["a"] * t["b"]}, ["mul"])

    error_case("math_add_shape_mismatch", "(2, 3) + (4) do not broadcast",
               {"a": (rand(2, 3), True), "b": (rand(4), True)},
               [binary("y", "add")], "shape_mismatch",
               lambda t: t["a"] + t["b"])
    error_case("math_mul_size_zero_mismatch", "(2, 3) * (0): 0 does not "
               "stretch to 3", {"a": (rand(2, 3), True),
                                "b": (torch.zeros(0, dtype=F64), False)},
               [binary("y", "mul")], "shape_mismatch",
               lambda t: t["a"] * t["b"])
    # PyTorch promotes mixed dtypes; yoke's rule (case-format.md) rejects them.
    error_case("math_sub_dtype_mismatch", "f64 - f32: yoke does not promote",
               {"a": (rand(2), True), "b": (rand(2, dtype=F32), False)},
               [binary("y", "sub")], "dtype_mismatch")
    error_case("math_div_i64_operand", "f64 / i64: float ops take no "
               "integer operand", {"a": (rand(2), True),
                                   "b": (torch.tensor([1, 2]), False)},
               [binary("y", "div")], "dtype_mismatch")

# ----------------------------------------------------------------- reduce


def reduce_cases():
    x = rand(2, 3, 4)
    options = [
        # (label, attrs, torch kwargs)
        ("all", None, {}),
        ("all_null_keepdim", {"dim": None, "keepdim": True},
         {"dim": (0, 1, 2), "keepdim": True}),
        ("dim1", {"dim": 1}, {"dim": 1}),
        ("neg_keepdim", {"dim": -1, "keepdim": True}, {"dim": -1, "keepdim": True}),
        ("dims", {"dim": [0, 2]}, {"dim": (0, 2)}),
        ("dims_neg_keepdim", {"dim": [-1, -3], "keepdim": True},
         {"dim": (-1, -3), "keepdim": True}),
        ("dims_list_of_one", {"dim": [-2]}, {"dim": (-2,)}),
    ]
    for label, attrs, kw in options:
        nodes = [node("sum", "sum", {"input": "x"}, attrs),
                 node("mean", "mean", {"input": "x"}, attrs)]
        case("math_reduce_" + label, "sum and mean of a (2, 3, 4) input, "
             "attrs %s" % json.dumps(attrs), {"x": (x, True)}, nodes,
             lambda t, kw=kw: {"sum": torch.sum(t["x"], **kw),
                               "mean": torch.mean(t["x"], **kw)},
             ["sum", "mean"])

    case("math_reduce_f32", "f32 sum over dim 0 and mean over dims [0, 1]",
         {"x": (rand(3, 5, dtype=F32), True)},
         [node("sum", "sum", {"input": "x"}, {"dim": 0}),
          node("mean", "mean", {"input": "x"}, {"dim": [0, 1]})],
         lambda t: {"sum": t["x"].sum(0), "mean": t["x"].mean((0, 1))},
         ["sum", "mean"])

    case("math_reduce_zero_dim_input", "a 0-d input takes dim 0 and -1",
         {"x": (rand(()), True)},
         [node("sum", "sum", {"input": "x"}, {"dim": 0}),
          node("mean", "mean", {"input": "x"}, {"dim": -1, "keepdim": True})],
         lambda t: {"sum": t["x"].sum(0), "mean": t["x"].mean(-1, keepdim=True)},
         ["sum", "mean"])

    # Sums of no elements are 0. (Their means are NaN, which JSON cannot
    # hold: tests/test_reduce.c checks that.)
    case("math_reduce_empty_sum", "sum over a size-0 dim gives zeros",
         {"x": (torch.zeros(0, 3, dtype=F64), True)},
         [node("sum", "sum", {"input": "x"}, {"dim": 0})],
         lambda t: {"sum": t["x"].sum(0)}, ["sum"])

    error_case("math_sum_dim_out_of_range", "dim 3 of a 3-d input",
               {"x": (x, True)}, [node("y", "sum", {"input": "x"}, {"dim": 3})],
               "invalid_argument", lambda t: t["x"].sum(3))
    error_case("math_mean_dim_out_of_range", "dim -4 of a 3-d input",
               {"x": (x, True)},
               [node("y", "mean", {"input": "x"}, {"dim": [0, -4]})],
               "invalid_argument", lambda t: t["x"].mean((0, -4)))
    error_case("math_sum_dim_repeated", "dims 1 and -2 are the same dim",
               {"x": (x, True)},
               [node("y", "sum", {"input": "x"}, {"dim": [1, -2]})],
               "invalid_argument", lambda t: t["x"].sum((1, -2)))
    error_case("math_mean_i64_input", "mean of an i64 tensor",
               {"x": (torch.tensor([1, 2]), False)},
               [node("y", "mean", {"input": "x"})], "dtype_mismatch",
               lambda t: t["x"].mean())

# ----------------------------------------------------------------- linalg


def matmul_node(name, a="a", b="b"):
    return node(name, "matmul", {"input": a, "other": b})


def linalg_cases():
    pairs = [
        ("2d", (3, 4), (4, 2)),
        ("batched", (2, 3, 4), (2, 4, 5)),
        ("broadcast_batch", (2, 1, 2, 3), (3, 3, 2)),
        ("nd_2d", (3, 2, 4), (4, 5)),
        ("2d_nd", (2, 3), (4, 3, 2)),
        ("dot", (3,), (3,)),
        ("matrix_vector", (2, 3), (3,)),
        ("vector_matrix", (3,), (3, 2)),
        ("vector_batched", (3,), (2, 3, 4)),
        ("batched_vector", (2, 2, 3), (3,)),
        ("empty_inner", (2, 0), (0, 3)),
    ]
    for label, sa, sb in pairs:
        case("math_matmul_" + label, "matmul of %s and %s" % (sa, sb),
             {"a": (rand(*sa), True), "b": (rand(*sb), True)},
             [matmul_node("y")], lambda t: {"y": torch.matmul(t["a"], t["b"])},
             ["y"])

    case("math_matmul_f32", "f32 batched matmul with broadcast batch dims",
         {"a": (rand(2, 1, 3, 4, dtype=F32), True),
          "b": (rand(3, 4, 2, dtype=F32), True)},
         [matmul_node("y")], lambda t: {"y": torch.matmul(t["a"], t["b"])},
         ["y"])

    case("math_matmul_same_leaf", "x @ x: both uses add into x's gradient",
         {"x": (rand(3, 3), True)}, [matmul_node("y", "x", "x")],
         lambda t: {"y": t["x"] @ t["x"]}, ["y"])

    x3 = rand(2, 5, 3)
    w = rand(4, 3)
    b = rand(4)
    lin = torch.nn.functional.linear
    case("math_linear_bias_3d", "linear on (2, 5, 3) input with bias",
         {"x": (x3, True), "W": (w, True), "b": (b, True)},
         [node("y", "linear", {"input": "x", "weight": "W", "bias": "b"})],
         lambda t: {"y": lin(t["x"], t["W"], t["b"])}, ["y"])
    case("math_linear_no_bias_3d", "linear on (2, 5, 3) input, bias left out",
         {"x": (x3, True), "W": (w, True)},
         [node("y", "linear", {"input": "x", "weight": "W"})],
         lambda t: {"y": lin(t["x"], t["W"])}, ["y"])
    case("math_linear_null_bias_1d", "linear on a 1-D input, bias null",
         {"x": (rand(3), True), "W": (w, True)},
         [node("y", "linear", {"input": "x", "weight": "W", "bias": None})],
         lambda t: {"y": lin(t["x"], t["W"])}, ["y"])
    case("math_linear_f32", "f32 linear with bias on (6, 3) input, x constant",
         {"x": (rand(6, 3, dtype=F32), False), "W": (w.float(), True),
          "b": (b.float(), True)},
         [node("y", "linear", {"input": "x", "weight": "W", "bias": "b"})],
         lambda t: {"y": lin(t["x"], t["W"], t["b"])}, ["y"])
    # a small model: tanh(linear(x)) @ v, summed
    case("math_linear_chain", "sum(tanh(x W^T + b) v): linear, matmul and "
         "sum together", {"x": (x3, False), "W": (w, True), "b": (b, True),
                          "v": (rand(4, 2), True)},
         [node("h", "linear", {"input": "x", "weight": "W", "bias": "b"}),
          node("t", "tanh", {"input": "h"}),
          matmul_node("o", "t", "v"),
          node("L", "sum", {"input": "o"}, {"dim": [0, 1]})],
         lambda t: {"h": lin(t["x"], t["W"], t["b"]),
                    "t": torch.tanh(lin(t["x"], t["W"], t["b"])),
                    "o": torch.tanh(lin(t["x"], t["W"], t["b"])) @ t["v"],
                    "L": (torch.tanh(lin(t["x"], t["W"], t["b"])) @ t["v"]).sum((0, 1))},
         ["L"])

    error_case("math_matmul_inner_mismatch", "(2, 3) @ (4, 5)",
               {"a": (rand(2, 3), True), "b": (rand(4, 5), True)},
               [matmul_node("y")], "shape_mismatch",
               lambda t: t["a"] @ t["b"])
    error_case("math_matmul_batch_mismatch", "batch dims 2 and 3 do not "
               "broadcast", {"a": (rand(2, 2, 3), True),
                             "b": (rand(3, 3, 2), True)},
               [matmul_node("y")], "shape_mismatch",
               lambda t: t["a"] @ t["b"])
    error_case("math_matmul_zero_dim", "a 0-d operand", {
               "a": (rand(()), True), "b": (rand(2, 2), True)},
               [matmul_node("y")], "shape_mismatch",
               lambda t: torch.matmul(t["a"], t["b"]))
    error_case("math_matmul_dtype_mismatch", "f32 @ f64",
               {"a": (rand(2, 2, dtype=F32), True), "b": (rand(2, 2), True)},
               [matmul_node("y")], "dtype_mismatch",
               lambda t: t["a"] @ t["b"])
    error_case("math_linear_in_mismatch", "input's last dim 4, weight (5, 3)",
               {"x": (rand(2, 4), True), "W": (rand(5, 3), True)},
               [node("y", "linear", {"input": "x", "weight": "W"})],
               "shape_mismatch", lambda t: lin(t["x"], t["W"]))
    error_case("math_linear_bias_mismatch", "bias (4) for weight (5, 3)",
               {"x": (rand(2, 3), True), "W": (rand(5, 3), True),
                "b": (rand(4), True)},
               [node("y", "linear", {"input": "x", "weight": "W", "bias": "b"})],
               "shape_mismatch", lambda t: lin(t["x"], t["W"], t["b"]))
    error_case("math_linear_dtype_mismatch", "f64 input, f32 weight",
               {"x": (rand(2, 3), True), "W": (rand(5, 3, dtype=F32), True)},
               [node("y", "linear", {"input": "x", "weight": "W"})],
               "dtype_mismatch", lambda t: lin(t["x"], t["W"]))


if __name__ == "__main__":
    yoke_cli.set_torch_threads(yoke_cli.parser(__doc__).parse_args().threads)
    arith_cases()
    reduce_cases()
    linalg_cases()
