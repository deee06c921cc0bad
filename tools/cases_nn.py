"""cases_nn -- PyTorch reference cases for reshape, narrow, softmax,
log_softmax, cross_entropy and mse_loss: writes tests/cases/nn_*.json
(format: ../shared/case-format.md).

    /usr/bin/python3 tools/cases_nn.py

Each valid case builds its graph in PyTorch from the same leaves, seeds the
listed nodes with random tensors (L = sum of value * seed), and records the
node values and the leaves' gradients. Error cases record the category yoke
must report; where PyTorch also rejects the input, the script checks that it
does. (A mean over no elements is NaN, which JSON cannot hold: that case is
in tests/test_loss.c instead.)
"""
import torch
import torch.nn.functional as F

from yoke_cases import write_case
import yoke_cli

torch.manual_seed(20240611)
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
    t = {k: v.detach().clone().requires_grad_(rg)
         for k, (v, rg) in leaves.items()}
    values = compute(t)
    seeds = {k: torch.randn(values[k].shape, dtype=F64).to(values[k].dtype)
             for k in seeded}
    loss = sum((values[k] * seeds[k]).sum() for k in seeded)
    loss.backward()
    grads = {k: (t[k].grad if t[k].grad is not None else torch.zeros_like(t[k]))
             for k, (_, rg) in leaves.items() if rg}
    for k, v in list(values.items()) + list(grads.items()):
        assert torch.isfinite(v).all(), name + ": " + k + " is not finite"
    write_case(name, about, leaves, nodes, seeds, values=values, grads=grads,
               tolerance=tolerance)


def error_case(name, about, leaves, nodes, category, torch_call=None):
    """An invalid case; torch_call, when given, must raise in PyTorch too."""
    if torch_call is not None:
        t = {k: v for k, (v, _) in leaves.items()}
        try:
            torch_call(t)
        except (RuntimeError, IndexError, ValueError):
            pass
        else:
            raise AssertionError(name + ": PyTorch accepted it")
    write_case(name, about, leaves, nodes, {}, error=category)


def node(name, op, inputs, attrs=None):
    d = {"name": name, "op": op, "inputs": inputs}
    if attrs is not None:
        d["attrs"] = attrs
    return d


def unary(name, op, x="x", **attrs):
    return node(name, op, {"input": x}, attrs if attrs else None)


CAT_WS = node("C", "cat", {"tensors": ["W", "S"]}, {"dim": 1})

# ------------------------------------------------------------------ shape


def shape_cases():
    x = rand(2, 3, 4)
    case("nn_reshape_infer", "(2, 3, 4) to [4, -1], [-1] and [2, 12] again "
         "from the first: order is row-major, gradients add",
         {"x": (x, True)},
         [unary("a", "reshape", shape=[4, -1]),
          unary("b", "reshape", shape=[-1]),
          unary("c", "reshape", "a", shape=[2, 12])],
         lambda t: {"a": t["x"].reshape(4, -1), "b": t["x"].reshape(-1),
                    "c": t["x"].reshape(4, -1).reshape(2, 12)},
         ["a", "b", "c"])
    case("nn_reshape_0d", "(1, 1) to [] (0-d) and back to [1, -1, 1]",
         {"x": (rand(1, 1), True)},
         [unary("s", "reshape", shape=[]),
          unary("r", "reshape", "s", shape=[1, -1, 1])],
         lambda t: {"s": t["x"].reshape(()),
                    "r": t["x"].reshape(()).reshape(1, -1, 1)},
         ["s", "r"])
    case("nn_reshape_f32", "f32 (3, 4) to [2, -1, 3]",
         {"x": (rand(3, 4, dtype=F32), True)},
         [unary("y", "reshape", shape=[2, -1, 3])],
         lambda t: {"y": t["x"].reshape(2, -1, 3)}, ["y"])
    case("nn_reshape_empty", "(0, 3) to [-1, 5]: -1 is 0",
         {"x": (torch.zeros(0, 3, dtype=F64), True)},
         [unary("y", "reshape", shape=[-1, 5])],
         lambda t: {"y": t["x"].reshape(-1, 5)}, ["y"])
    case("nn_reshape_of_cat", "reshape of a column concatenation "
         "cat([W, S], 1) to [-1]: each part gets its gradient",
         {"W": (rand(3, 2), True), "S": (rand(3, 1), True)},
         [CAT_WS, unary("y", "reshape", "C", shape=[-1])],
         lambda t: {"y": torch.cat([t["W"], t["S"]], 1).reshape(-1)}, ["y"])

    x = rand(3, 4, 2)
    case("nn_narrow_dims", "narrow along dims 0, 1 and -1, with negative "
         "start, a slice ending at the end and an empty slice",
         {"x": (x, True)},
         [unary("a", "narrow", dim=0, start=1, length=2),
          unary("b", "narrow", dim=1, start=-3, length=2),
          unary("c", "narrow", dim=-1, start=1, length=1),
          unary("d", "narrow", dim=-2, start=2, length=2),
          unary("e", "narrow", dim=1, start=4, length=0)],
         lambda t: {"a": t["x"].narrow(0, 1, 2), "b": t["x"].narrow(1, -3, 2),
                    "c": t["x"].narrow(-1, 1, 1), "d": t["x"].narrow(-2, 2, 2),
                    "e": t["x"].narrow(1, 4, 0)},
         ["a", "b", "c", "d", "e"])
    case("nn_narrow_overlapping", "two overlapping slices of one leaf and a "
         "slice of a slice: gradients add",
         {"x": (rand(2, 5), True)},
         [unary("a", "narrow", dim=1, start=0, length=3),
          unary("b", "narrow", dim=1, start=2, length=3),
          unary("c", "narrow", "b", dim=0, start=1, length=1)],
         lambda t: {"a": t["x"].narrow(1, 0, 3), "b": t["x"].narrow(1, 2, 3),
                    "c": t["x"].narrow(1, 2, 3).narrow(0, 1, 1)},
         ["a", "b", "c"])
    case("nn_narrow_f32", "f32 narrow along dim 1",
         {"x": (rand(3, 4, dtype=F32), True)},
         [unary("y", "narrow", dim=1, start=1, length=2)],
         lambda t: {"y": t["x"].narrow(1, 1, 2)}, ["y"])
    case("nn_narrow_of_cat", "columns 1..3 of cat([W, S], 1) span both "
         "parts: each gets its own columns' gradient",
         {"W": (rand(3, 2), True), "S": (rand(3, 2), True)},
         [CAT_WS, unary("y", "narrow", "C", dim=1, start=1, length=3)],
         lambda t: {"y": torch.cat([t["W"], t["S"]], 1).narrow(1, 1, 3)},
         ["y"])

    x23 = {"x": (rand(2, 3), True)}
    error_case("nn_reshape_numel_mismatch", "6 elements to [4]", x23,
               [unary("y", "reshape", shape=[4])], "shape_mismatch",
               lambda t: t["x"].reshape(4))
    error_case("nn_reshape_infer_mismatch", "6 elements to [4, -1]", x23,
               [unary("y", "reshape", shape=[4, -1])], "shape_mismatch",
               lambda t: t["x"].reshape(4, -1))
    error_case("nn_reshape_two_inferred", "two -1 entries", x23,
               [unary("y", "reshape", shape=[-1, -1])], "invalid_argument",
               lambda t: t["x"].reshape(-1, -1))
    error_case("nn_reshape_negative", "a size of -2", x23,
               [unary("y", "reshape", shape=[-2, -3])], "invalid_argument",
               lambda t: t["x"].reshape(-2, -3))
    error_case("nn_narrow_past_end", "start 2 + length 2 past size 3", x23,
               [unary("y", "narrow", dim=1, start=2, length=2)],
               "invalid_argument", lambda t: t["x"].narrow(1, 2, 2))
    error_case("nn_narrow_start_out_of_range", "start 4 in a dim of size 3",
               x23, [unary("y", "narrow", dim=1, start=4, length=0)],
               "invalid_argument", lambda t: t["x"].narrow(1, 4, 0))
    error_case("nn_narrow_negative_start_out_of_range", "start -4 in a dim "
               "of size 3", x23,
               [unary("y", "narrow", dim=1, start=-4, length=1)],
               "invalid_argument", lambda t: t["x"].narrow(1, -4, 1))
    error_case("nn_narrow_negative_length", "length -1", x23,
               [unary("y", "narrow", dim=0, start=0, length=-1)],
               "invalid_argument", lambda t: t["x"].narrow(0, 0, -1))
    error_case("nn_narrow_dim_out_of_range", "dim 2 of a 2-d input", x23,
               [unary("y", "narrow", dim=2, start=0, length=1)],
               "invalid_argument", lambda t: t["x"].narrow(2, 0, 1))

# ---------------------------------------------------------------- softmax


def softmax_cases():
    x = rand(2, 3, 4, lo=-2.0, hi=2.0)
    case("nn_softmax_dims", "softmax and log_softmax along every dim of a "
         "3-d input, negative dims too",
         {"x": (x, True)},
         [unary("s0", "softmax", dim=0), unary("s1", "softmax", dim=1),
          unary("s2", "softmax", dim=-1),
          unary("l0", "log_softmax", dim=-3),
          unary("l1", "log_softmax", dim=1),
          unary("l2", "log_softmax", dim=2)],
         lambda t: {"s0": F.softmax(t["x"], 0), "s1": F.softmax(t["x"], 1),
                    "s2": F.softmax(t["x"], -1),
                    "l0": F.log_softmax(t["x"], -3),
                    "l1": F.log_softmax(t["x"], 1),
                    "l2": F.log_softmax(t["x"], 2)},
         ["s0", "s1", "s2", "l0", "l1", "l2"])
    case("nn_softmax_f32", "f32 softmax and log_softmax along the last dim",
         {"x": (rand(3, 5, dtype=F32, lo=-3.0, hi=3.0), True)},
         [unary("s", "softmax", dim=-1), unary("l", "log_softmax", dim=1)],
         lambda t: {"s": F.softmax(t["x"], -1),
                    "l": F.log_softmax(t["x"], 1)},
         ["s", "l"])
    big = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, -1e4, 1e4],
                        [1e4, 1e4, -1e4, 0.0]], dtype=F64)
    case("nn_softmax_large_logits", "logits of +-1e4: exp would overflow "
         "without the max subtracted; every value and gradient is finite",
         {"x": (big, True)},
         [unary("s", "softmax", dim=1), unary("l", "log_softmax", dim=1),
          unary("s0", "softmax", dim=0)],
         lambda t: {"s": F.softmax(t["x"], 1), "l": F.log_softmax(t["x"], 1),
                    "s0": F.softmax(t["x"], 0)},
         ["s", "l", "s0"])
    case("nn_softmax_large_logits_f32", "f32 logits of +-1e4",
         {"x": (big.to(F32), True)},
         [unary("s", "softmax", dim=-1), unary("l", "log_softmax", dim=-1)],
         lambda t: {"s": F.softmax(t["x"], -1),
                    "l": F.log_softmax(t["x"], -1)},
         ["s", "l"])
    case("nn_softmax_0d", "a 0-d input is one element: softmax 1, "
         "log_softmax 0, gradient 0",
         {"x": (rand(()), True)},
         [unary("s", "softmax", dim=0), unary("l", "log_softmax", dim=-1)],
         lambda t: {"s": F.softmax(t["x"], 0), "l": F.log_softmax(t["x"], -1)},
         ["s", "l"])
    case("nn_softmax_empty", "a (2, 0) input along either dim",
         {"x": (torch.zeros(2, 0, dtype=F64), True)},
         [unary("s", "softmax", dim=1), unary("l", "log_softmax", dim=0)],
         lambda t: {"s": F.softmax(t["x"], 1), "l": F.log_softmax(t["x"], 0)},
         ["s", "l"])
    case("nn_softmax_of_cat", "softmax over the rows of cat([W, S], 1)",
         {"W": (rand(3, 2), True), "S": (rand(3, 2), True)},
         [CAT_WS, unary("s", "softmax", "C", dim=1),
          unary("l", "log_softmax", "C", dim=0)],
         lambda t: {"s": F.softmax(torch.cat([t["W"], t["S"]], 1), 1),
                    "l": F.log_softmax(torch.cat([t["W"], t["S"]], 1), 0)},
         ["s", "l"])

    x23 = {"x": (rand(2, 3), True)}
    error_case("nn_softmax_dim_out_of_range", "dim 2 of a 2-d input", x23,
               [unary("y", "softmax", dim=2)], "invalid_argument",
               lambda t: F.softmax(t["x"], 2))
    error_case("nn_log_softmax_dim_out_of_range", "dim -3 of a 2-d input",
               x23, [unary("y", "log_softmax", dim=-3)], "invalid_argument",
               lambda t: F.log_softmax(t["x"], -3))
    error_case("nn_softmax_i64_input", "softmax of an i64 tensor",
               {"x": (torch.tensor([1, 2, 3]), False)},
               [unary("y", "softmax", dim=0)], "dtype_mismatch",
               lambda t: F.softmax(t["x"], 0))
    error_case("nn_log_softmax_i64_input", "log_softmax of an i64 tensor",
               {"x": (torch.tensor([1, 2, 3]), False)},
               [unary("y", "log_softmax", dim=0)], "dtype_mismatch",
               lambda t: F.log_softmax(t["x"], 0))

# ------------------------------------------------------------------- loss


def ce(name, x="x", target="t", reduction=None):
    attrs = None if reduction is None else {"reduction": reduction}
    return node(name, "cross_entropy", {"input": x, "target": target}, attrs)


def mse(name, x="x", target="y", reduction=None):
    attrs = None if reduction is None else {"reduction": reduction}
    return node(name, "mse_loss", {"input": x, "target": target}, attrs)


def cross_entropy_cases():
    x = rand(4, 5, lo=-2.0, hi=2.0)
    t = torch.tensor([4, 0, 2, 4])
    leaves = {"x": (x, True), "t": (t, False)}
    case("nn_cross_entropy", "mean, sum and the default (mean) over a batch "
         "of 4 with 5 classes, a class repeated",
         leaves, [ce("mean", reduction="mean"), ce("sum", reduction="sum"),
                  ce("default")],
         lambda v: {"mean": F.cross_entropy(v["x"], v["t"]),
                    "sum": F.cross_entropy(v["x"], v["t"], reduction="sum"),
                    "default": F.cross_entropy(v["x"], v["t"])},
         ["mean", "sum", "default"])
    case("nn_cross_entropy_f32", "f32 logits, mean and sum",
         {"x": (rand(3, 4, dtype=F32, lo=-3.0, hi=3.0), True),
          "t": (torch.tensor([1, 3, 0]), False)},
         [ce("mean"), ce("sum", reduction="sum")],
         lambda v: {"mean": F.cross_entropy(v["x"], v["t"]),
                    "sum": F.cross_entropy(v["x"], v["t"], reduction="sum")},
         ["mean", "sum"])
    big = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0],
                        [1e4, 1e4, -1e4], [-1e4, 3.0, 1e4]], dtype=F64)
    case("nn_cross_entropy_large_logits", "logits of +-1e4: finite loss "
         "(0 when the target holds the max, 2e4 when it holds -1e4) and "
         "finite gradients",
         {"x": (big, True), "t": (torch.tensor([0, 1, 2, 2]), False)},
         [ce("mean"), ce("sum", reduction="sum")],
         lambda v: {"mean": F.cross_entropy(v["x"], v["t"]),
                    "sum": F.cross_entropy(v["x"], v["t"], reduction="sum")},
         ["mean", "sum"])
    case("nn_cross_entropy_large_logits_f32", "f32 logits of +-1e4",
         {"x": (big.to(F32), True), "t": (torch.tensor([0, 1, 2, 2]), False)},
         [ce("sum", reduction="sum")],
         lambda v: {"sum": F.cross_entropy(v["x"], v["t"], reduction="sum")},
         ["sum"])
    case("nn_cross_entropy_one_class", "C = 1: every loss is 0, every "
         "gradient 0",
         {"x": (rand(3, 1), True), "t": (torch.tensor([0, 0, 0]), False)},
         [ce("mean")], lambda v: {"mean": F.cross_entropy(v["x"], v["t"])},
         ["mean"])
    case("nn_cross_entropy_empty_sum", "N = 0 with sum: 0, an empty "
         "gradient (the mean would be NaN, as in PyTorch)",
         {"x": (torch.zeros(0, 3, dtype=F64), True),
          "t": (torch.zeros(0, dtype=torch.int64), False)},
         [ce("sum", reduction="sum")],
         lambda v: {"sum": F.cross_entropy(v["x"], v["t"], reduction="sum")},
         ["sum"])
    case("nn_cross_entropy_of_cat", "logits = cat([W, S], 1): each part "
         "gets its columns of the gradient",
         {"W": (rand(3, 2), True), "S": (rand(3, 2), True),
          "t": (torch.tensor([3, 0, 2]), False)},
         [CAT_WS, ce("loss", "C")],
         lambda v: {"loss": F.cross_entropy(torch.cat([v["W"], v["S"]], 1),
                                            v["t"])},
         ["loss"])
    case("nn_cross_entropy_with_log_softmax", "cross_entropy(x) and "
         "log_softmax(x) of one leaf, both seeded: gradients add",
         {"x": (rand(2, 4), True), "t": (torch.tensor([1, 3]), False)},
         [ce("loss", reduction="sum"), unary("l", "log_softmax", dim=1)],
         lambda v: {"loss": F.cross_entropy(v["x"], v["t"], reduction="sum"),
                    "l": F.log_softmax(v["x"], 1)},
         ["loss", "l"])

    x = {"x": (rand(2, 3), True)}
    error_case("nn_cross_entropy_target_out_of_range", "target 3 with 3 "
               "classes", dict(x, t=(torch.tensor([0, 3]), False)),
               [ce("loss")], "index_out_of_range",
               lambda v: F.cross_entropy(v["x"], v["t"]))
    error_case("nn_cross_entropy_target_negative", "target -1 (no "
               "ignore_index in yoke)",
               dict(x, t=(torch.tensor([-1, 0]), False)),
               [ce("loss", reduction="sum")], "index_out_of_range",
               lambda v: F.cross_entropy(v["x"], v["t"], reduction="sum"))
    # PyTorch reads a float target of the input's shape as probabilities;
    # yoke's target is class indices only.
    error_case("nn_cross_entropy_float_target", "an f64 target",
               dict(x, t=(torch.tensor([0.0, 1.0], dtype=F64), False)),
               [ce("loss")], "dtype_mismatch")
    error_case("nn_cross_entropy_i64_input", "i64 logits",
               {"x": (torch.tensor([[1, 2], [3, 4]]), False),
                "t": (torch.tensor([0, 1]), False)},
               [ce("loss")], "dtype_mismatch",
               lambda v: F.cross_entropy(v["x"], v["t"]))
    error_case("nn_cross_entropy_target_length", "3 targets for 2 rows",
               dict(x, t=(torch.tensor([0, 1, 2]), False)),
               [ce("loss")], "shape_mismatch",
               lambda v: F.cross_entropy(v["x"], v["t"]))
    error_case("nn_cross_entropy_bad_reduction", "reduction \"avg\"",
               dict(x, t=(torch.tensor([0, 1]), False)),
               [ce("loss", reduction="avg")], "invalid_argument",
               lambda v: F.cross_entropy(v["x"], v["t"], reduction="avg"))


def mse_cases():
    leaves = {"x": (rand(2, 3), True), "y": (rand(2, 3), True)}
    case("nn_mse_loss", "mean, sum and the default (mean); the target "
         "requires grad too and gets the negated gradient",
         leaves, [mse("mean", reduction="mean"), mse("sum", reduction="sum"),
                  mse("default")],
         lambda v: {"mean": F.mse_loss(v["x"], v["y"]),
                    "sum": F.mse_loss(v["x"], v["y"], reduction="sum"),
                    "default": F.mse_loss(v["x"], v["y"])},
         ["mean", "sum", "default"])
    case("nn_mse_loss_const_target", "a target without requires_grad",
         {"x": (rand(4), True), "y": (rand(4), False)},
         [mse("loss", reduction="sum")],
         lambda v: {"loss": F.mse_loss(v["x"], v["y"], reduction="sum")},
         ["loss"])
    case("nn_mse_loss_f32", "f32, 3-d",
         {"x": (rand(2, 2, 3, dtype=F32), True),
          "y": (rand(2, 2, 3, dtype=F32), True)},
         [mse("mean"), mse("sum", reduction="sum")],
         lambda v: {"mean": F.mse_loss(v["x"], v["y"]),
                    "sum": F.mse_loss(v["x"], v["y"], reduction="sum")},
         ["mean", "sum"])
    case("nn_mse_loss_0d", "0-d input and target",
         {"x": (rand(()), True), "y": (rand(()), True)},
         [mse("loss")], lambda v: {"loss": F.mse_loss(v["x"], v["y"])},
         ["loss"])
    case("nn_mse_loss_same_leaf", "mse_loss(x, x): 0, and the two "
         "gradients cancel",
         {"x": (rand(3), True)}, [mse("loss", "x", "x")],
         lambda v: {"loss": F.mse_loss(v["x"], v["x"])}, ["loss"])
    case("nn_mse_loss_empty_sum", "no elements with sum: 0",
         {"x": (torch.zeros(0, 2, dtype=F64), True),
          "y": (torch.zeros(0, 2, dtype=F64), True)},
         [mse("loss", reduction="sum")],
         lambda v: {"loss": F.mse_loss(v["x"], v["y"], reduction="sum")},
         ["loss"])
    case("nn_mse_loss_of_narrow", "a regression head: mse_loss of a "
         "reshaped narrow of cat([W, S], 1) against a target",
         {"W": (rand(3, 2), True), "S": (rand(3, 2), True),
          "y": (rand(6), False)},
         [CAT_WS, unary("n", "narrow", "C", dim=1, start=1, length=2),
          unary("r", "reshape", "n", shape=[-1]),
          mse("loss", "r", "y")],
         lambda v: {"loss": F.mse_loss(
             torch.cat([v["W"], v["S"]], 1).narrow(1, 1, 2).reshape(-1),
             v["y"])},
         ["loss"])

    # PyTorch broadcasts [3] against [2, 3] with a warning; yoke does not.
    error_case("nn_mse_loss_shape_mismatch", "target [3] for input [2, 3]",
               {"x": (rand(2, 3), True), "y": (rand(3), False)},
               [mse("loss")], "shape_mismatch")
    error_case("nn_mse_loss_dtype_mismatch", "f32 target for f64 input",
               {"x": (rand(3), True), "y": (rand(3, dtype=F32), False)},
               [mse("loss")], "dtype_mismatch")
    error_case("nn_mse_loss_bad_reduction", "reduction \"none\" (yoke has "
               "mean and sum only)",
               {"x": (rand(3), True), "y": (rand(3), False)},
               [mse("loss", reduction="none")], "invalid_argument")
    error_case("nn_mse_loss_unknown_reduction", "reduction \"avg\"",
               {"x": (rand(3), True), "y": (rand(3), False)},
               [mse("loss", reduction="avg")], "invalid_argument",
               lambda v: F.mse_loss(v["x"], v["y"], reduction="avg"))


if __name__ == "__main__":
    yoke_cli.set_torch_threads(yoke_cli.parser(__doc__).parse_args().threads)
    shape_cases()
    softmax_cases()
    cross_entropy_cases()
    mse_cases()
