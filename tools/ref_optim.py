"""ref_optim -- PyTorch reference numbers for lib/optim.c's tests.

    /usr/bin/python3 tools/ref_optim.py      # writes tests/ref_optim.h and
                                             # tests/cases/optim_*.json

Runs torch.optim (PyTorch 1.13, CPU, single-tensor code paths) over a few
steps of known gradients and writes the parameters after every step, the
step count and the state tensors after the last step, as C arrays that
tests/test_optim.c reads (so the tests need no PyTorch):

- every optimizer and option (sgd, adam, adamw, adagrad, sparse_adam) on a
  dense gradient, in f64 and f32, including steps in which the parameter
  gets no gradient (torch skips it: p.grad is None);
- row-sparse gradients given as (looked-up indices, one gradient row each),
  as an embedding with sparse=True makes them: the lazy kinds (sgd and
  adagrad without momentum / weight decay, sparse_adam) against torch's
  sparse code paths, the others against torch on the dense equivalent
  (case-format.md: a row-sparse gradient gives exactly the dense numbers);
  steps that look up no row (0 rows: t still advances);
- frozen rows: every update is elementwise within a row, so an optimizer
  with rows R frozen equals torch's optimizer run on the other rows alone
  (a sub-tensor), with R left at their values and their state at the
  initial value;
- a parameter read by two ops (exp and tanh, then cat): one Adam state,
  one step of the summed gradient a step;
- a weight read by embedding and embedding_bag (dense: Adam; sparse=True:
  SparseAdam), the tie of the seed example;
- lr schedules (StepLR, CosineAnnealingLR, LinearLR) and gradient clipping
  (clip_grad_norm_ for norm types 2, inf and 1.5; clip_grad_value_).

Row-wise Adagrad has no PyTorch counterpart: its tests use hand-worked
numbers.

It also writes a few case files with an "optimizer" block
(case-format.md, "Optimizer steps") for the case evaluator: several steps,
two groups, a leaf that gets no gradient (skipped), feeds that change the
rows looked up (lazy sparse_adam), a row-sparse gradient with options
PyTorch refuses on it (dense numbers), and invalid optimizer blocks. "feeds"
sits inside the "optimizer" block, next to "steps".
"""
import math
import os

import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yoke_cases import write_case  # noqa: E402
import yoke_cli  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                   "ref_optim.h")
F64, F32, I64 = torch.float64, torch.float32, torch.int64
_gen = torch.Generator().manual_seed(20261201)

NONE, DENSE, ROWS = "REF_NONE", "REF_DENSE", "REF_ROWS"


def rnd(*shape, dtype=F64, scale=1.0):
    """Random normal numbers rounded to 4 decimals (exact in f32 after the
    conversion, so C and PyTorch start from the same bits)."""
    x = torch.randn(*shape, generator=_gen, dtype=F64) * scale
    return torch.round(x * 1e4).div(1e4).to(dtype)


# ----------------------------------------------------------------- C text

def c_double(v):
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(float(v))


def c_doubles(t):
    vals = t.detach().reshape(-1).tolist() if torch.is_tensor(t) else list(t)
    if not vals:
        return "NULL"
    return "(const double[]){" + ", ".join(c_double(v) for v in vals) + "}"


def c_list(t):
    """The numbers of t, comma-separated (for a brace initializer)."""
    vals = t.detach().reshape(-1).tolist() if torch.is_tensor(t) else list(t)
    return ", ".join(c_double(v) for v in vals)


def c_int64s(vals):
    vals = list(vals)
    if not vals:
        return "NULL"
    return "(const int64_t[]){" + ", ".join(str(int(v)) for v in vals) + "}"


# ------------------------------------------------------------- optimizers

def make_opt(kind, params, opts):
    o = dict(opts)
    betas = None
    if "beta1" in o or "beta2" in o:
        betas = (o.pop("beta1", 0.9), o.pop("beta2", 0.999))
    if betas is not None:
        o["betas"] = betas
    if "nesterov" in o:
        o["nesterov"] = bool(o["nesterov"])
    if "amsgrad" in o:
        o["amsgrad"] = bool(o["amsgrad"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
           "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
           "sparse_adam": torch.optim.SparseAdam}[kind]
    return cls(params, **o)


LAZY = {"sparse_adam"}


def lazy_in_torch(kind, opts):
    """Does torch take a sparse gradient for this kind and these options?"""
    if kind == "sparse_adam":
        return True
    if kind == "sgd":
        return opts.get("momentum", 0) == 0 and opts.get("weight_decay", 0) == 0
    if kind == "adagrad":
        return opts.get("weight_decay", 0) == 0
    return False


def STATE_NAMES(kind, opts):
    if kind == "sgd":
        return ["momentum_buffer"] if opts.get("momentum", 0) else []
    if kind in ("adam", "adamw"):
        return ["exp_avg", "exp_avg_sq"] + (
            ["max_exp_avg_sq"] if opts.get("amsgrad") else [])
    if kind == "adagrad":
        return ["sum"]
    return ["exp_avg", "exp_avg_sq"]


def state_initial(kind, name, opts):
    return opts.get("initial_accumulator_value", 0.0) if name == "sum" else 0.0


def grad_of(step, rows, cols, dtype, keep, sparse):
    """The torch gradient of a step, restricted to rows `keep` (renumbered),
    or None when the step gives no gradient."""
    kind = step["grad"]
    if kind == NONE:
        return None
    if kind == DENSE:
        return step["dense"][keep].clone()
    pos = {r: i for i, r in enumerate(keep)}
    sel = [k for k, r in enumerate(step["idx"]) if r in pos]
    idx = torch.tensor([pos[step["idx"][k]] for k in sel], dtype=I64)
    vals = step["seed"][sel] if sel else torch.zeros(0, cols, dtype=dtype)
    if sparse:
        return torch.sparse_coo_tensor(idx.reshape(1, -1), vals,
                                       (len(keep), cols)).coalesce()
    g = torch.zeros(len(keep), cols, dtype=dtype)
    g.index_add_(0, idx, vals)
    return g


def after_of(c, keep, sub):
    """The full parameter: frozen rows as they started, the others sub's."""
    full = c["init"].clone()
    full[keep] = sub.detach()
    return full


def run_case(c):
    """Runs torch on the unfrozen rows; fills c["after"], c["states"],
    c["step_count"]."""
    rows, cols, dtype = c["rows"], c["cols"], c["dtype"]
    keep = [r for r in range(rows) if r not in set(c["frozen"])]
    sub = torch.nn.Parameter(c["init"][keep].clone())
    opt = make_opt(c["kind"], [sub], c["opts"])
    sparse = lazy_in_torch(c["kind"], c["opts"])
    afters, t = [], 0
    for step in c["steps"]:
        sub.grad = grad_of(step, rows, cols, dtype, keep, sparse)
        if sub.grad is not None and sub.grad.is_sparse and \
                sub.grad._nnz() == 0:
            # PyTorch 1.13's sparse Adagrad and SparseAdam fail on a
            # gradient with no row. case-format.md: t advances and no row
            # changes -- for adagrad that is its dense step on zeros.
            if c["kind"] == "sparse_adam":
                st = opt.state[sub]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(sub)
                    st["exp_avg_sq"] = torch.zeros_like(sub)
                st["step"] += 1
                t += 1
                afters.append(after_of(c, keep, sub))
                continue
            sub.grad = torch.zeros_like(sub)
        opt.step()
        t += sub.grad is not None
        afters.append(after_of(c, keep, sub))
    c["after"] = afters
    c["step_count"] = t
    st = opt.state[sub]
    c["states"] = []
    for name in STATE_NAMES(c["kind"], c["opts"]):
        full = torch.full((rows, cols),
                          state_initial(c["kind"], name, c["opts"]),
                          dtype=dtype)
        if name in st:
            full[keep] = st[name].detach()
        c["states"].append((name, full))
    return c


# ------------------------------------------------------------------ cases

def dense_steps(rows, cols, dtype, pattern, scales):
    """pattern: 'D' a dense gradient, '-' none; scales per step (amsgrad
    needs gradients that shrink)."""
    out = []
    for p, s in zip(pattern, scales):
        if p == "-":
            out.append({"grad": NONE})
        else:
            out.append({"grad": DENSE, "dense": rnd(rows, cols, dtype=dtype,
                                                    scale=s)})
    return out


def rows_steps(cols, dtype, idx_lists):
    """idx_lists: a list of looked-up indices per step, or None (no
    gradient). Rows marked by a negative index get a gradient of zeros
    (looked up with weight 0): the index is -1 - row."""
    out = []
    for il in idx_lists:
        if il is None:
            out.append({"grad": NONE})
            continue
        idx = [r if r >= 0 else -1 - r for r in il]
        seed = rnd(len(idx), cols, dtype=dtype)
        for k, r in enumerate(il):
            if r < 0:
                seed[k] = 0
        out.append({"grad": ROWS, "idx": idx, "seed": seed})
    return out


def as_dense(steps, rows, cols, dtype):
    """The same gradients, summed into dense tensors."""
    out = []
    for s in steps:
        if s["grad"] != ROWS:
            out.append(dict(s))
            continue
        g = torch.zeros(rows, cols, dtype=dtype)
        g.index_add_(0, torch.tensor(s["idx"], dtype=I64), s["seed"])
        out.append({"grad": DENSE, "dense": g})
    return out


def case(name, kind, opts, dtype, rows, cols, steps, frozen=()):
    return run_case({"name": name, "kind": kind, "opts": opts,
                     "dtype": dtype, "rows": rows, "cols": cols,
                     "init": rnd(rows, cols, dtype=dtype), "steps": steps,
                     "frozen": list(frozen)})


DENSE_OPTS = [
    ("sgd", "sgd", {"lr": 0.1}),
    ("sgd_momentum", "sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd_momentum_dampening_wd", "sgd",
     {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd_nesterov_wd", "sgd",
     {"lr": 0.05, "momentum": 0.9, "nesterov": 1, "weight_decay": 0.05}),
    ("adam", "adam", {"lr": 0.01}),
    ("adam_betas_eps_wd", "adam",
     {"lr": 0.02, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
      "weight_decay": 0.1}),
    ("adam_amsgrad", "adam", {"lr": 0.01, "amsgrad": 1}),
    ("adamw", "adamw", {"lr": 0.01}),
    ("adamw_amsgrad_wd", "adamw",
     {"lr": 0.02, "weight_decay": 0.1, "amsgrad": 1, "beta1": 0.85}),
    ("adagrad", "adagrad", {"lr": 0.1}),
    ("adagrad_all_options", "adagrad",
     {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.05,
      "initial_accumulator_value": 0.5, "eps": 1e-6}),
    ("adam_defaults", "adam", {}),
    ("adagrad_defaults", "adagrad", {}),
]

# Shrinking gradients (so amsgrad's max differs from v) and a step with no
# gradient in the middle (skipped: no weight decay, no state change).
PATTERN, SCALES = "DD-D", [2.0, 0.5, 1.0, 0.1]


def all_cases():
    cases = []
    for name, kind, opts in DENSE_OPTS:
        for dtype, suffix in ((F64, "f64"), (F32, "f32")):
            steps = dense_steps(4, 3, dtype, PATTERN, SCALES)
            cases.append(case("dense_%s_%s" % (name, suffix), kind, opts,
                              dtype, 4, 3, steps))

    # Row-sparse gradients: repeated rows, a step with 0 rows, a step with
    # no gradient, a row looked up with gradient 0 (-1 - 2 = row 2).
    idx_lists = [[1, 3, 3, 6], [], None, [0, 1, 7, -1 - 2], [6, 2]]
    rows_opts = [
        ("sparse_adam", "sparse_adam", {"lr": 0.05}),
        ("sparse_adam_betas_eps", "sparse_adam",
         {"lr": 0.1, "beta1": 0.7, "beta2": 0.95, "eps": 1e-4}),
        ("sgd", "sgd", {"lr": 0.1}),
        ("adagrad", "adagrad",
         {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1}),
        # exact (dense numbers), touching every row
        ("adam", "adam", {"lr": 0.05}),
        ("adam_amsgrad_wd", "adam",
         {"lr": 0.05, "amsgrad": 1, "weight_decay": 0.1}),
        ("adamw", "adamw", {"lr": 0.05, "weight_decay": 0.1}),
        ("sgd_wd", "sgd", {"lr": 0.1, "weight_decay": 0.1}),
        ("sgd_momentum_wd", "sgd",
         {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
        ("sgd_nesterov", "sgd", {"lr": 0.1, "momentum": 0.5, "nesterov": 1}),
        ("adagrad_wd", "adagrad", {"lr": 0.1, "weight_decay": 0.2}),
    ]
    for name, kind, opts in rows_opts:
        for dtype, suffix in ((F64, "f64"), (F32, "f32")):
            steps = rows_steps(3, dtype, idx_lists)
            c = case("rows_%s_%s" % (name, suffix), kind, opts, dtype, 8, 3,
                     steps)
            cases.append(c)
            if kind != "sparse_adam":
                # the same gradients, dense: the same numbers
                d = run_case(dict(c, name="rows_%s_%s_as_dense" % (name, suffix),
                                  steps=as_dense(steps, 8, 3, dtype)))
                for x, y in zip(c["after"], d["after"]):
                    assert torch.allclose(x, y, rtol=1e-6, atol=1e-7), name
                cases.append(d)

    # Frozen rows.
    cases.append(case("frozen_adam_dense_f64", "adam", {"lr": 0.05}, F64, 6,
                      3, dense_steps(6, 3, F64, "DDD", [1, 1, 1]),
                      frozen=[1, 3]))
    cases.append(case("frozen_adam_rows_f64", "adam", {"lr": 0.05}, F64, 6, 3,
                      rows_steps(3, F64, [[1, 2, 4], [0, 1], [1, 5, 5]]),
                      frozen=[1, 2]))
    cases.append(case("frozen_sparse_adam_f32", "sparse_adam", {"lr": 0.05},
                      F32, 6, 3,
                      rows_steps(3, F32, [[1, 2, 4], [0, 1], [1, 5, 5]]),
                      frozen=[1, 5]))
    cases.append(case("frozen_adagrad_rows_f64", "adagrad",
                      {"lr": 0.1, "initial_accumulator_value": 0.3}, F64, 6,
                      3, rows_steps(3, F64, [[0, 3], [3, 4], [4]]),
                      frozen=[3]))
    cases.append(case("frozen_sgd_momentum_dense_f32", "sgd",
                      {"lr": 0.1, "momentum": 0.9}, F32, 5, 2,
                      dense_steps(5, 2, F32, "DDD", [1, 1, 1]),
                      frozen=[0, 4]))
    return cases


def emit_case(c):
    steps = []
    for s, after in zip(c["steps"], c["after"]):
        if s["grad"] == NONE:
            g = "REF_NONE, NULL, 0, NULL, NULL"
        elif s["grad"] == DENSE:
            g = "REF_DENSE, %s, 0, NULL, NULL" % c_doubles(s["dense"])
        else:
            g = "REF_ROWS, NULL, %d, %s, %s" % (len(s["idx"]),
                                                c_int64s(s["idx"]),
                                                c_doubles(s["seed"]))
        steps.append("      {%s,\n       %s}" % (g, c_doubles(after)))
    opts = ", ".join('{"%s", %s}' % (k, c_double(v))
                     for k, v in c["opts"].items())
    states = ", ".join('{"%s", %s}' % (n, c_doubles(t))
                       for n, t in c["states"])
    return ("  {\"%s\", \"%s\", %d, %d, %d,\n"
            "   %d, {%s},\n"
            "   %d, %s,\n"
            "   %s,\n"
            "   %d, {\n%s},\n"
            "   %d, %d, {%s}},\n") % (
        c["name"], c["kind"], 1 if c["dtype"] == F32 else 0, c["rows"],
        c["cols"], len(c["opts"]), opts, len(c["frozen"]),
        c_int64s(c["frozen"]), c_doubles(c["init"]), len(c["steps"]),
        ",\n".join(steps), c["step_count"], len(c["states"]), states)


# ---------------------------------------------------------- tied weights

def tie_unary():
    """p read by exp and tanh, concatenated: 3 Adam steps of the summed
    gradient, one state."""
    init = rnd(2, 3)
    seed = rnd(4, 3)
    p = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([p], lr=0.1)
    afters = []
    for _ in range(3):
        opt.zero_grad()
        y = torch.cat([p.exp(), p.tanh()], 0)
        (y * seed).sum().backward()
        opt.step()
        afters.append(p.detach().clone())
    assert opt.state[p]["step"].item() == 3
    return ("static const double ref_tie_unary_init[] = %s;\n"
            "static const double ref_tie_unary_seed[] = %s;\n"
            "static const double ref_tie_unary_after[3][6] = {%s};\n") % (
        "{" + c_list(init) + "}", "{" + c_list(seed) + "}",
        ", ".join("{" + c_list(a) + "}" for a in afters))


def tie_embedding():
    """W read by embedding (E) and embedding_bag (B, mean): Adam on the
    dense gradient and SparseAdam on the sparse one, 3 steps each."""
    W0 = rnd(6, 3)
    idx = torch.tensor([[0, 2], [2, 5]], dtype=I64)
    bidx = torch.tensor([2, 3, 3, 1, 0], dtype=I64)
    offs = torch.tensor([0, 3], dtype=I64)
    sE, sB = rnd(2, 2, 3), rnd(2, 3)
    out = ("static const double ref_tie_emb_init[] = {%s};\n"
           "static const int64_t ref_tie_emb_idx[] = {0, 2, 2, 5};\n"
           "static const int64_t ref_tie_emb_bidx[] = {2, 3, 3, 1, 0};\n"
           "static const int64_t ref_tie_emb_offsets[] = {0, 3};\n"
           "static const double ref_tie_emb_seed_e[] = {%s};\n"
           "static const double ref_tie_emb_seed_b[] = {%s};\n") % (
        c_list(W0), c_list(sE), c_list(sB))
    for sparse, name in ((False, "adam"), (True, "sparse_adam")):
        W = torch.nn.Parameter(W0.clone())
        opt = (torch.optim.SparseAdam([W], lr=0.1) if sparse
               else torch.optim.Adam([W], lr=0.1))
        afters = []
        for _ in range(3):
            opt.zero_grad()
            E = F.embedding(idx, W, sparse=sparse)
            B = F.embedding_bag(bidx, W, offs, mode="mean", sparse=sparse)
            ((E * sE).sum() + (B * sB).sum()).backward()
            assert W.grad.is_sparse == sparse
            opt.step()
            afters.append(W.detach().clone())
        out += "static const double ref_tie_emb_%s_after[3][18] = {%s};\n" % (
            name, ", ".join("{" + c_list(a) + "}" for a in afters))
    return out


# ------------------------------------------------------- schedules, clip

def schedules():
    def lrs(make, n):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sch = make(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
        return out
    step = lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 10)
    cos = lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=8, eta_min=0.001), 9)
    lin = lrs(lambda o: torch.optim.lr_scheduler.LinearLR(
        o, start_factor=0.25, total_iters=4), 7)
    return ("/* lr at steps 0, 1, ... with base lr 0.1 */\n"
            "static const double ref_lr_step[10] = {%s}; /* StepLR(3, 0.5) */\n"
            "static const double ref_lr_cosine[9] = {%s}; /* CosineAnnealingLR(T_max 8, eta_min 0.001) */\n"
            "static const double ref_lr_linear[7] = {%s}; /* LinearLR(start_factor 0.25, total_iters 4) */\n"
            ) % tuple(c_list(x) for x in (step, cos, lin))


def clipping():
    """A dense gradient (A, 3x2) and a row-sparse one (B, 5x2, from rows
    looked up with repeats: coalescing changes the norm)."""
    gA = rnd(3, 2)
    bidx = [4, 1, 4]
    bseed = rnd(3, 2)
    gB = torch.zeros(5, 2, dtype=F64)
    gB.index_add_(0, torch.tensor(bidx), bseed)
    out = ("static const double ref_clip_grad_a[] = {%s};\n"
           "static const int64_t ref_clip_idx_b[] = {4, 1, 4};\n"
           "static const double ref_clip_seed_b[] = {%s};\n") % (
        c_list(gA), c_list(bseed))
    rows = []
    for max_norm, norm_type in ((1.0, 2.0), (0.5, math.inf), (0.7, 1.5),
                                (100.0, 2.0)):
        a = torch.nn.Parameter(torch.zeros(3, 2, dtype=F64))
        b = torch.nn.Parameter(torch.zeros(5, 2, dtype=F64))
        a.grad, b.grad = gA.clone(), gB.clone()
        total = torch.nn.utils.clip_grad_norm_([a, b], max_norm, norm_type)
        rows.append("  {%s, %s, %s, {%s}, {%s}}" % (
            c_double(max_norm), c_double(norm_type), c_double(total.item()),
            c_list(a.grad), c_list(b.grad)))
    out += ("static const struct {\n  double max_norm, norm_type, total;\n"
            "  double a[6], b[10];\n} ref_clip_norm[] = {\n%s};\n") % (
        ",\n".join(rows))
    a = torch.nn.Parameter(torch.zeros(3, 2, dtype=F64))
    b = torch.nn.Parameter(torch.zeros(5, 2, dtype=F64))
    a.grad, b.grad = gA.clone(), gB.clone()
    torch.nn.utils.clip_grad_value_([a, b], 0.5)
    out += ("/* clip_grad_value_(0.5) */\n"
            "static const double ref_clip_value_a[] = {%s};\n"
            "static const double ref_clip_value_b[] = {%s};\n") % (
        c_list(a.grad), c_list(b.grad))
    return out


HEADER = """/*
 * ref_optim.h -- GENERATED by tools/ref_optim.py from PyTorch %s (CPU);
 * do not edit. Regenerate: /usr/bin/python3 tools/ref_optim.py
 *
 * ref_cases: a parameter [rows, cols], options by torch.optim's names
 * ("beta1"/"beta2" for betas), rows frozen in the optimizer, and steps. A
 * step's gradient is none, dense, or rows: n_idx looked-up indices (may
 * repeat, may be 0) with one gradient row each in seed (n_idx x cols), as
 * an embedding with sparse = true makes it. `after` is the parameter after
 * the step; step_count and states are those after the last step.
 */
#ifndef REF_OPTIM_H
#define REF_OPTIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum { REF_NONE, REF_DENSE, REF_ROWS };

typedef struct ref_step {
    int grad;
    const double *dense;
    int64_t n_idx;
    const int64_t *idx;
    const double *seed;
    const double *after;
} ref_step;

typedef struct ref_case {
    const char *name;
    const char *kind;
    int f32;
    int64_t rows, cols;
    int n_opts;
    struct { const char *name; double value; } opts[6];
    int n_frozen;
    const int64_t *frozen;
    const double *init;
    int n_steps;
    ref_step steps[6];
    int64_t step_count;
    int n_states;
    struct { const char *name; const double *data; } states[3];
} ref_case;

"""


# ------------------------------------------------------------ case files

def torch_opt(name, params, opts):
    """A torch optimizer from a case's params (betas as a list)."""
    o = dict(opts)
    if "betas" in o:
        o["beta1"], o["beta2"] = o.pop("betas")
    return make_opt(name, params, o)


def case_linear_two_groups():
    """y = linear(X, W, b), U used only by an unseeded node: W in sgd
    (nesterov, weight decay), b and U in adamw -- U gets no gradient and is
    skipped (no weight decay)."""
    X, W0, b0, U0 = rnd(4, 3), rnd(2, 3), rnd(2), rnd(2)
    seed = rnd(4, 2)
    W, b, U = (torch.nn.Parameter(t.clone()) for t in (W0, b0, U0))
    g_sgd = {"lr": 0.1, "momentum": 0.9, "nesterov": True,
             "weight_decay": 0.01}
    g_adamw = {"lr": 0.05, "betas": [0.8, 0.99], "weight_decay": 0.1}
    o1 = torch.optim.SGD([W], **g_sgd)
    o2 = torch.optim.AdamW([b, U], lr=0.05, betas=(0.8, 0.99),
                           weight_decay=0.1)
    grads = None
    for k in range(3):
        o1.zero_grad()
        o2.zero_grad()
        y = F.linear(X, W, b)
        _ = U * 2  # the unseeded node "V"
        (y * seed).sum().backward()
        if k == 0:
            grads = {"W": W.grad.clone(), "b": b.grad.clone(),
                     "U": torch.zeros(2)}
            value = y.detach().clone()
        o1.step()
        o2.step()
    assert U.grad is None and torch.equal(U.detach(), U0)
    write_case(
        "optim_linear_two_groups", "3 steps: W with sgd (momentum 0.9, "
        "nesterov, weight_decay 0.01), b and U with adamw; U feeds only an "
        "unseeded node, so it gets no gradient and adamw skips it (no weight "
        "decay): it keeps its value",
        {"X": (X, False), "W": (W0, True), "b": (b0, True), "U": (U0, True)},
        [{"name": "Y", "op": "linear",
          "inputs": {"input": "X", "weight": "W", "bias": "b"}},
         {"name": "V", "op": "mul", "inputs": {"input": "U", "other": "U"}}],
        {"Y": seed}, values={"Y": value}, grads=grads,
        optimizer={"steps": 3, "groups": [
            {"name": "sgd", "leaves": ["W"], "params": g_sgd},
            {"name": "adamw", "leaves": ["b", "U"], "params": g_adamw}]},
        params={"W": W, "b": b, "U": U})


# indices per step for the embedding cases: row 7 is never looked up, row 6
# only in step 1, padding (row 0) in the bags of step 2
EMB_FEEDS = [
    {"idx": [[1, 2], [2, 6]], "bidx": [3, 3, 1, 4], "offs": [0, 2]},
    {"idx": [[1, 1], [5, 2]], "bidx": [0, 0, 4, 5], "offs": [0, 2]},
    {"idx": [[3, 2], [2, 2]], "bidx": [1, 5, 5, 4], "offs": [0, 3]},
]


def run_tied(opt_name, opts, sparse_torch, W0, sE, sB):
    W = torch.nn.Parameter(W0.clone())
    opt = torch_opt(opt_name, [W], opts)
    first = None
    for f in EMB_FEEDS:
        opt.zero_grad()
        idx = torch.tensor(f["idx"], dtype=I64)
        E = F.embedding(idx, W, sparse=sparse_torch)
        B = F.embedding_bag(torch.tensor(f["bidx"], dtype=I64), W,
                            torch.tensor(f["offs"], dtype=I64), mode="sum",
                            padding_idx=0, sparse=sparse_torch)
        ((E * sE).sum() + (B * sB).sum()).backward()
        if first is None:
            first = W.grad.to_dense().clone()
        opt.step()
    return W.detach(), first


def case_tied(name, opt_name, opts, sparse, about):
    W0, sE, sB = rnd(8, 3), rnd(2, 2, 3), rnd(2, 3)
    # torch refuses some options on sparse gradients; the numbers are the
    # dense ones (case-format.md), so torch runs dense where it must
    torch_sparse = sparse and lazy_in_torch(opt_name, opts)
    W, g = run_tied(opt_name, opts, torch_sparse, W0, sE, sB)
    if torch_sparse and opt_name != "sparse_adam":
        # torch's sparse path agrees with its dense one
        Wd, _ = run_tied(opt_name, opts, False, W0, sE, sB)
        assert torch.allclose(W, Wd, rtol=1e-12, atol=1e-14)
    f0 = EMB_FEEDS[0]
    feeds = [{"idx": tensor_i64(f["idx"]), "bidx": tensor_i64(f["bidx"]),
              "offs": tensor_i64(f["offs"])} for f in EMB_FEEDS]
    write_case(
        name, about,
        {"W": (W0, True), "idx": (torch.tensor(f0["idx"], dtype=I64), False),
         "bidx": (torch.tensor(f0["bidx"], dtype=I64), False),
         "offs": (torch.tensor(f0["offs"], dtype=I64), False)},
        [{"name": "E", "op": "embedding",
          "inputs": {"input": "idx", "weight": "W"},
          "attrs": {"sparse": sparse}},
         {"name": "B", "op": "embedding_bag",
          "inputs": {"input": "bidx", "weight": "W", "offsets": "offs"},
          "attrs": {"mode": "sum", "padding_idx": 0, "sparse": sparse}}],
        {"E": sE, "B": sB}, grads={"W": g},
        optimizer={"steps": 3, "feeds": feeds, "groups": [
            {"name": opt_name, "leaves": ["W"], "params": opts}]},
        params={"W": W})


def tensor_i64(v):
    from yoke_cases import tensor
    return tensor(torch.tensor(v, dtype=I64))


def case_errors():
    X, W0 = rnd(2, 3), rnd(4, 3)
    idx = torch.tensor([1, 3], dtype=I64)
    for name, opt, about in (
            ("optim_err_nesterov_without_momentum",
             {"name": "sgd", "leaves": ["W"],
              "params": {"lr": 0.1, "nesterov": True}},
             "nesterov needs momentum > 0"),
            ("optim_err_negative_lr",
             {"name": "adam", "leaves": ["W"], "params": {"lr": -0.01}},
             "a negative lr"),
            ("optim_err_unknown_param",
             {"name": "adam", "leaves": ["W"], "params": {"momentum": 0.9}},
             "adam has no momentum"),
            ("optim_err_unknown_optimizer",
             {"name": "lbfgs", "leaves": ["W"]}, "no such optimizer"),
            ("optim_err_sparse_adam_dense_gradient",
             {"name": "sparse_adam", "leaves": ["W"]},
             "sparse_adam on a leaf whose gradient is dense (embedding "
             "without sparse)")):
        write_case(name, about,
                   {"W": (W0, True), "idx": (idx, False)},
                   [{"name": "E", "op": "embedding",
                     "inputs": {"input": "idx", "weight": "W"}}],
                   {"E": X}, error="invalid_argument",
                   optimizer={"steps": 1, "groups": [opt]})


def write_cases():
    case_linear_two_groups()
    case_tied("optim_tied_sparse_adam_feeds", "sparse_adam", {"lr": 0.1},
              True, "W read by a sparse embedding and a sparse sum bag "
              "(padding_idx 0); 3 steps of sparse_adam with feeds: rows "
              "differ per step (row 7 never looked up, row 6 in step 1 "
              "only), step 2's first bag is all padding; lazy: rows not "
              "looked up keep value and moments")
    case_tied("optim_tied_adam_sparse_dense_numbers", "adam",
              {"lr": 0.1, "amsgrad": True, "weight_decay": 0.05}, True,
              "the same graph with adam (amsgrad, weight decay) on the "
              "row-sparse gradient: the dense numbers (every row moves)")
    case_tied("optim_tied_adagrad_wd_sparse", "adagrad",
              {"lr": 0.1, "weight_decay": 0.1, "lr_decay": 0.01}, True,
              "adagrad with weight_decay on a row-sparse gradient: PyTorch "
              "refuses it, yoke gives the dense numbers (from PyTorch dense)")
    case_tied("optim_tied_sgd_dense", "sgd",
              {"lr": 0.1, "momentum": 0.5, "dampening": 0.2}, False,
              "the same graph, dense, with sgd (momentum, dampening)")
    case_errors()


def main():
    torch.set_default_dtype(F64)
    cases = all_cases()
    text = HEADER % torch.__version__
    text += "static const ref_case ref_cases[] = {\n"
    text += "".join(emit_case(c) for c in cases)
    text += "};\n#define N_REF_CASES %d\n\n" % len(cases)
    text += tie_unary() + "\n" + tie_embedding() + "\n" + schedules()
    text += "\n" + clipping() + "\n#endif\n"
    with open(OUT, "w") as f:
        f.write(text)
    write_cases()
    print("wrote %s (%d optimizer cases)" % (os.path.relpath(OUT), len(cases)))


if __name__ == "__main__":
    yoke_cli.set_torch_threads(yoke_cli.parser(__doc__).parse_args().threads)
    main()
