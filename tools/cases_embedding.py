"""cases_embedding -- PyTorch reference cases for embedding and embedding_bag.

    /usr/bin/python3 tools/cases_embedding.py   # writes tests/cases/emb_*.json

Every mode and option of both ops (values and gradients), weight tying
(one weight read by an embedding and an embedding_bag, directly and through
a column concatenation), and the invalid inputs of ../shared/case-format.md
as error cases.

Values come from torch.nn.functional (PyTorch 1.13, CPU). Each bag case is
also computed by an independent reference (`bag_reference`: F.embedding
rows reduced with plain tensor ops, the max routed to the first entry in
input order) and the script stops if the two disagree. Where PyTorch 1.13 is
wrong -- scale_grad_by_freq in embedding_bag divides some rows by another
index's count -- the case takes the reference's numbers instead and says so
in its "about". Error cases that PyTorch 1.13 does not reject (or would read
out of bounds on) are written from case-format.md's rules alone.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yoke_cases import CASES_DIR, write_case  # noqa: E402
import yoke_cli  # noqa: E402

F64, F32, I64 = torch.float64, torch.float32, torch.int64
_gen = torch.Generator().manual_seed(20261128)


def rnd(*shape, dtype=F64):
    """Random normal numbers rounded to 4 decimals (readable case files)."""
    x = torch.randn(*shape, generator=_gen, dtype=F64)
    return torch.round(x * 1e4).div(1e4).to(dtype)


def idx(*v):
    return torch.tensor(v, dtype=I64)


def no_column_ties(w):
    """Max cases need every column's values distinct (one max per bag)."""
    for d in range(w.shape[1]):
        col = w[:, d].tolist()
        assert len(set(col)) == len(col), "tie in column %d" % d


# ----------------------------------------------------------- bag semantics

def bag_bounds(inp, offsets, last):
    """The [start, end) of every bag, per case-format.md."""
    if inp.dim() == 2:
        B, L = inp.shape
        return [(b * L, b * L + L) for b in range(B)]
    o, n = offsets.tolist(), inp.numel()
    nb = len(o) - (1 if last else 0)
    return [(o[b], o[b + 1] if b + 1 < len(o) else n) for b in range(nb)]


def bag_reference(inp, w, offsets=None, psw=None, mode="mean", pad=None,
                  last=False, scale=False):
    """embedding_bag as case-format.md documents it, from F.embedding (whose
    scale_grad_by_freq counts over its whole input, as the rule says) and
    plain reductions: padding entries skipped, empty bags zero, the max's
    gradient routed to the first entry in input order holding it."""
    V, D = w.shape
    if pad is not None and pad < 0:
        pad += V
    flat = inp.reshape(-1)
    rows = F.embedding(flat, w, padding_idx=pad, scale_grad_by_freq=scale)
    out = []
    for lo, hi in bag_bounds(inp, offsets, last):
        ents = [i for i in range(lo, hi) if flat[i].item() != pad]
        if not ents:
            out.append(w[0:0].sum(0))  # zeros, in the graph, no gradient
            continue
        r = rows[ents]
        if mode == "sum":
            if psw is not None:
                r = r * psw.reshape(-1)[ents].unsqueeze(1)
            out.append(r.sum(0))
        elif mode == "mean":
            out.append(r.mean(0))
        else:
            top = r.max(0).values
            first = [next(k for k in range(len(ents)) if r[k, d] == top[d])
                     for d in range(D)]
            out.append(torch.stack([r[first[d], d] for d in range(D)]))
    return torch.stack(out) if out else w[0:0] * 1


def bag_torch(inp, w, offsets=None, psw=None, mode="mean", pad=None,
              last=False, scale=False, sparse=False):
    return F.embedding_bag(inp, w, offsets, mode=mode, per_sample_weights=psw,
                           padding_idx=pad, include_last_offset=last,
                           scale_grad_by_freq=scale, sparse=sparse)


# ------------------------------------------------------------ case writer

def grad_of(t):
    if t.grad is None:
        return torch.zeros_like(t)
    return t.grad.to_dense() if t.grad.is_sparse else t.grad


def evaluate(tensors, compute, seeded, seeds=None):
    """Runs compute(leaves) -> {node: output}; backpropagates L = sum over
    seeded nodes of sum(out * seed); returns outputs, seeds and grads."""
    leaves = {k: v.clone().requires_grad_(rg) for k, (v, rg) in tensors.items()}
    outs = compute(leaves)
    if seeds is None:
        seeds = {k: rnd(*outs[k].shape, dtype=outs[k].dtype) for k in seeded}
    loss = sum((outs[k] * seeds[k]).sum() for k in seeded)
    if loss.requires_grad:
        loss.backward()
    grads = {k: grad_of(leaves[k]) for k, (_, rg) in tensors.items() if rg}
    return outs, seeds, grads


def case(name, about, tensors, nodes, compute, seeded, check=None,
         tolerance=None):
    """Writes one case from compute (PyTorch); check, if given, is an
    independent computation of the same thing that must agree."""
    outs, seeds, grads = evaluate(tensors, compute, seeded)
    if check is not None:
        outs2, _, grads2 = evaluate(tensors, check, seeded, seeds)
        for k in outs:
            assert torch.allclose(outs[k], outs2[k], rtol=1e-6, atol=1e-9), \
                "%s: value of %s differs from the reference" % (name, k)
        for k in grads:
            assert torch.allclose(grads[k], grads2[k], rtol=1e-6, atol=1e-9), \
                "%s: gradient of %s differs from the reference" % (name, k)
    write_case("emb_" + name, about, tensors, nodes, seeds,
               values={k: v.detach() for k, v in outs.items()}, grads=grads,
               tolerance=tolerance)


def error_case(name, about, tensors, nodes, seeds, error, torch_call=None):
    """An invalid case. torch_call, when PyTorch may safely be asked, says
    in the about whether PyTorch 1.13 rejects the input too."""
    if torch_call is not None:
        try:
            torch_call()
            about += " (PyTorch 1.13 on CPU accepts this input; yoke follows " \
                     "case-format.md)"
        except (RuntimeError, ValueError, AssertionError, IndexError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            about += " (PyTorch 1.13 rejects it too: %s)" % msg[:120]
    write_case("emb_err_" + name, about,
               {k: (v, rg) for k, (v, rg) in tensors.items()}, nodes, seeds,
               error=error)


def attrs(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def bag_node(name="B", inp="bidx", weight="W", offsets="offs", psw=None,
             **kw):
    n = {"name": name, "op": "embedding_bag",
         "inputs": {"input": inp, "weight": weight}}
    if offsets is not None:
        n["inputs"]["offsets"] = offsets
    if psw is not None:
        n["inputs"]["per_sample_weights"] = psw
    a = attrs(**kw)
    if a:
        n["attrs"] = a
    return n


def emb_node(name="E", inp="idx", weight="W", **kw):
    n = {"name": name, "op": "embedding",
         "inputs": {"input": inp, "weight": weight}}
    a = attrs(**kw)
    if a:
        n["attrs"] = a
    return n


# --------------------------------------------------------------- embedding

def embedding_cases():
    W = rnd(7, 3)
    case("embedding_1d", "embedding of a 1-D index with repeats: repeated "
         "rows get the sum of their output gradients",
         {"W": (W, True), "idx": (idx(3, 0, 6, 3, 3), False)},
         [emb_node()], lambda t: {"E": F.embedding(t["idx"], t["W"])}, ["E"])
    case("embedding_0d", "embedding of a 0-d index gives a [D] output",
         {"W": (W, True), "idx": (torch.tensor(4), False)},
         [emb_node()], lambda t: {"E": F.embedding(t["idx"], t["W"])}, ["E"])
    case("embedding_3d_input", "embedding of a [2, 2, 2] index: output "
         "[2, 2, 2, D]",
         {"W": (W, True), "idx": (idx(1, 2, 2, 5, 0, 6, 1, 1).reshape(2, 2, 2),
                                  False)},
         [emb_node()], lambda t: {"E": F.embedding(t["idx"], t["W"])}, ["E"])
    for pad in (2, -1, -7):
        case("embedding_padding_%s" % str(pad).replace("-", "neg"),
             "embedding with padding_idx=%d (negative p means p + V): that "
             "row is output as is but gets no gradient" % pad,
             {"W": (W, True), "idx": (idx(2, 6, 0, 2, 6, 4).reshape(2, 3),
                                      False)},
             [emb_node(padding_idx=pad)],
             lambda t, p=pad: {"E": F.embedding(t["idx"], t["W"],
                                                padding_idx=p)}, ["E"])
    for pad in (None, 1):
        case("embedding_scale_grad_by_freq%s" % ("_padding" if pad else ""),
             "embedding with scale_grad_by_freq: row r's gradient divided by "
             "r's count in the input (row 1 three times, row 5 twice)%s" %
             (", padding_idx=1 gets nothing" if pad else ""),
             {"W": (W, True), "idx": (idx(1, 5, 1, 0, 5, 1), False)},
             [emb_node(padding_idx=pad, scale_grad_by_freq=True)],
             lambda t, p=pad: {"E": F.embedding(t["idx"], t["W"], padding_idx=p,
                                                scale_grad_by_freq=True)},
             ["E"])
    case("embedding_sparse", "embedding with sparse=true: a row-sparse "
         "gradient with the dense numbers (padding_idx=0 left out)",
         {"W": (W, True), "idx": (idx(0, 3, 3, 6), False)},
         [emb_node(padding_idx=0, sparse=True)],
         lambda t: {"E": F.embedding(t["idx"], t["W"], padding_idx=0,
                                     sparse=True)}, ["E"])
    case("embedding_f32", "embedding in f32 with padding_idx=-2",
         {"W": (rnd(5, 4, dtype=F32), True), "idx": (idx(4, 3, 0, 4), False)},
         [emb_node(padding_idx=-2)],
         lambda t: {"E": F.embedding(t["idx"], t["W"], padding_idx=-2)},
         ["E"])
    case("embedding_empty_input", "embedding of an empty index: output "
         "[0, D], zero gradient",
         {"W": (W, True), "idx": (idx(), False)},
         [emb_node()], lambda t: {"E": F.embedding(t["idx"], t["W"])}, ["E"])
    S = rnd(7, 2)
    case("embedding_of_cat", "embedding of a column concatenation "
         "cat([W, S], 1): each part gets its columns of the row gradients",
         {"W": (W, True), "S": (S, True), "idx": (idx(6, 1, 6), False)},
         [{"name": "C", "op": "cat", "inputs": {"tensors": ["W", "S"]},
           "attrs": {"dim": 1}}, emb_node(weight="C")],
         lambda t: {"E": F.embedding(t["idx"], torch.cat([t["W"], t["S"]], 1))},
         ["E"])


# ----------------------------------------------------------- embedding_bag

BIDX = idx(1, 4, 1, 5, 0, 2, 5, 3)
OFFS = idx(0, 3, 3, 6)          # bags [1, 4, 1], [], [5, 0, 2], [5, 3]
OFFS_LAST = idx(0, 3, 3, 6, 8)  # the same bags with include_last_offset


def bag_case(name, about, w, inp, offsets=None, psw=None, mode="mean",
             pad=None, last=False, scale=False, sparse=False):
    """One embedding_bag case; scale_grad_by_freq takes the reference's
    numbers (PyTorch 1.13's are wrong there), everything else PyTorch's,
    cross-checked against the reference."""
    tensors = {"W": (w, True), "bidx": (inp, False)}
    if offsets is not None:
        tensors["offs"] = (offsets, False)
    if psw is not None:
        tensors["psw"] = (psw, True)
    if mode == "max":
        no_column_ties(w)
    node = bag_node(offsets="offs" if offsets is not None else None,
                    psw="psw" if psw is not None else None, mode=mode,
                    include_last_offset=last or None, padding_idx=pad,
                    scale_grad_by_freq=scale or None, sparse=sparse or None)

    def ours(t):
        return {"B": bag_reference(t["bidx"], t["W"], t.get("offs"),
                                   t.get("psw"), mode, pad, last, scale)}

    def theirs(t):
        return {"B": bag_torch(t["bidx"], t["W"], t.get("offs"), t.get("psw"),
                               mode, pad, last, scale, sparse)}

    if scale:
        about += "; scale_grad_by_freq: values from the documented rule " \
                 "(F.embedding rows with scale_grad_by_freq, reduced " \
                 "explicitly), since PyTorch 1.13's CPU embedding_bag " \
                 "divides some rows by another index's count"
        case(name, about, tensors, [node], ours, ["B"])
    else:
        case(name, about, tensors, [node], theirs, ["B"], check=ours)


def bag_mode_cases():
    W = rnd(6, 3)
    for mode in ("sum", "mean", "max"):
        bag_case("bag_%s_offsets" % mode, "embedding_bag %s with offsets "
                 "[0, 3, 3, 6]: bags [1, 4, 1], [] (empty: zeros, no "
                 "gradient), [5, 0, 2], [5, 3]" % mode, W, BIDX, OFFS,
                 mode=mode)
        bag_case("bag_%s_include_last_offset" % mode, "embedding_bag %s with "
                 "include_last_offset: offsets [0, 3, 3, 6, 8] close the last "
                 "bag (4 bags from 5 offsets)" % mode, W, BIDX, OFFS_LAST,
                 mode=mode, last=True)
        bag_case("bag_%s_2d" % mode, "embedding_bag %s over a 2-D input "
                 "[4, 2]: one bag a row, no offsets" % mode, W,
                 BIDX.reshape(4, 2), mode=mode)
        for pad in (5, -5):
            bag_case("bag_%s_padding_%s" % (mode, str(pad).replace("-", "neg")),
                     "embedding_bag %s with padding_idx=%d (row %d): padding "
                     "entries are skipped (not in the mean's divisor, never "
                     "the max); bag [5, 5] of only padding is an empty bag"
                     % (mode, pad, pad % 6), W, idx(1, 5, 4, 5, 5, 0, 5),
                     idx(0, 3, 5), mode=mode, pad=pad)
        bag_case("bag_%s_empty_input" % mode, "embedding_bag %s of an empty "
                 "input with offsets [0]: one empty bag (zeros)" % mode, W,
                 idx(), idx(0), mode=mode)
        bag_case("bag_%s_empty_input_include_last" % mode, "embedding_bag %s "
                 "of an empty input, offsets [0], include_last_offset: zero "
                 "bags, output [0, D]" % mode, W, idx(), idx(0), mode=mode,
                 last=True)
        bag_case("bag_%s_f32" % mode, "embedding_bag %s in f32 with offsets, "
                 "an empty bag and padding_idx=0" % mode, rnd(6, 3, dtype=F32),
                 BIDX, OFFS, mode=mode, pad=0)
        if mode != "max":
            bag_case("bag_%s_sparse" % mode, "embedding_bag %s with sparse="
                     "true: row-sparse gradient, the dense numbers" % mode, W,
                     BIDX, OFFS, mode=mode, sparse=True, pad=2)
            bag_case("bag_%s_scale_grad_by_freq" % mode, "embedding_bag %s "
                     "with scale_grad_by_freq: row r's gradient from this call "
                     "divided by r's count in the whole input (rows 1 and 5 "
                     "twice, across bags)" % mode, W, BIDX, OFFS, mode=mode,
                     scale=True)
            bag_case("bag_%s_scale_grad_by_freq_2d_padding" % mode,
                     "embedding_bag %s, 2-D input, scale_grad_by_freq and "
                     "padding_idx=4" % mode, W, idx(1, 4, 1, 1, 4, 3).reshape(
                         2, 3), mode=mode, scale=True, pad=4)


def bag_psw_cases():
    W = rnd(6, 3)
    psw = rnd(8)
    bag_case("bag_sum_psw", "embedding_bag sum with per_sample_weights: entry "
             "i adds psw[i] W[input[i]]; d psw[i] = W[input[i]] . seed of its "
             "bag", W, BIDX, OFFS, psw=psw, mode="sum")
    bag_case("bag_sum_psw_padding", "per_sample_weights with padding_idx=1: "
             "padding entries get psw gradient 0", W, BIDX, OFFS, psw=psw,
             mode="sum", pad=1)
    bag_case("bag_sum_psw_2d", "per_sample_weights over a 2-D "
             "input [2, 4]", W, BIDX.reshape(2, 4), psw=psw.reshape(2, 4),
             mode="sum")
    bag_case("bag_sum_psw_sparse_include_last", "per_sample_weights, sparse, "
             "include_last_offset", W, BIDX, OFFS_LAST, psw=psw, mode="sum",
             last=True, sparse=True)
    bag_case("bag_sum_psw_scale_grad_by_freq", "per_sample_weights with "
             "scale_grad_by_freq: only the weight's gradient is scaled, not "
             "psw's", W, BIDX, OFFS, psw=psw, mode="sum", scale=True)
    bag_case("bag_sum_psw_f32", "per_sample_weights in f32", rnd(6, 3, dtype=F32),
             BIDX, OFFS, psw=rnd(8, dtype=F32), mode="sum", pad=-1)


def bag_max_tie_cases():
    # Columns tie on purpose: the gradient of each output element goes to
    # the first entry, in input order, that holds the max.
    W = torch.tensor([[1, 5, 0], [3, 5, 2], [3, 1, 2], [0.5, -1, 2]], dtype=F64)
    tensors = {"W": (W, True), "bidx": (idx(0, 1, 2, 2, 1, 0, 3, 3), False),
               "offs": (idx(0, 3, 6), False)}

    def ours(t):
        return {"B": bag_reference(t["bidx"], t["W"], t["offs"], mode="max")}

    def theirs(t):
        return {"B": bag_torch(t["bidx"], t["W"], t["offs"], mode="max")}

    case("bag_max_ties", "embedding_bag max where columns tie: bags [0, 1, 2] "
         "and [2, 1, 0] hold the same rows in opposite orders; each output "
         "element's gradient goes to the first entry in input order holding "
         "the max (so different columns take different rows); bag [3, 3] "
         "repeats a row", tensors, [bag_node(mode="max")], theirs, ["B"],
         check=ours)


# ------------------------------------------------------------------- tying

def tie_cases():
    W, S = rnd(8, 3), rnd(8, 2)
    no_column_ties(torch.cat([W, S], 1))
    bidx, offs = idx(2, 7, 2, 0, 5, 6, 5), idx(0, 3, 3, 4)
    eidx = idx(7, 1, 2, 2, 0, 7).reshape(2, 3)
    for mode in ("sum", "mean", "max"):
        tensors = {"W": (W, True), "idx": (eidx, False),
                   "bidx": (bidx, False), "offs": (offs, False)}
        case("tie_embedding_and_bag_%s" % mode, "one weight W read by an "
             "embedding and an embedding_bag (%s): its gradient is the sum "
             "of both uses" % mode, tensors,
             [emb_node(), bag_node(mode=mode)],
             lambda t, md=mode: {
                 "E": F.embedding(t["idx"], t["W"]),
                 "B": bag_torch(t["bidx"], t["W"], t["offs"], mode=md)},
             ["E", "B"],
             check=lambda t, md=mode: {
                 "E": F.embedding(t["idx"], t["W"]),
                 "B": bag_reference(t["bidx"], t["W"], t["offs"], mode=md)})
        tensors = {"W": (W, True), "S": (S, True), "idx": (eidx, False),
                   "bidx": (bidx, False), "offs": (offs, False)}
        cat = {"name": "C", "op": "cat", "inputs": {"tensors": ["W", "S"]},
               "attrs": {"dim": 1}}
        case("tie_cat_bag_%s" % mode, "the seed's extended EmbeddingBag: W "
             "feeds an embedding and, concatenated with the bag-only S "
             "(cat([W, S], 1)), an embedding_bag (%s); W gets both uses' "
             "gradients, S the bag's last columns" % mode, tensors,
             [cat, emb_node(), bag_node(weight="C", mode=mode)],
             lambda t, md=mode: {
                 "E": F.embedding(t["idx"], t["W"]),
                 "B": bag_torch(t["bidx"], torch.cat([t["W"], t["S"]], 1),
                                t["offs"], mode=md)},
             ["E", "B"],
             check=lambda t, md=mode: {
                 "E": F.embedding(t["idx"], t["W"]),
                 "B": bag_reference(t["bidx"], torch.cat([t["W"], t["S"]], 1),
                                    t["offs"], mode=md)})
    tensors = {"W": (W, True), "S": (S, True), "idx": (eidx, False),
               "bidx": (bidx, False), "offs": (offs, False)}
    cat = {"name": "C", "op": "cat", "inputs": {"tensors": ["W", "S"]},
           "attrs": {"dim": 1}}
    case("tie_cat_bag_all_sparse_padding", "cat([W, S], 1) tie with sparse="
         "true on both uses (W and S get row-sparse gradients, the dense "
         "numbers) and padding_idx 2 in the embedding, 5 in the bag; PyTorch "
         "1.13 cannot send a sparse gradient through cat, so the numbers were "
         "computed with sparse=false (sparse changes no number)", tensors,
         [cat, emb_node(padding_idx=2, sparse=True),
          bag_node(weight="C", mode="mean", padding_idx=5, sparse=True)],
         lambda t: {
             "E": F.embedding(t["idx"], t["W"], padding_idx=2),
             "B": bag_torch(t["bidx"], torch.cat([t["W"], t["S"]], 1),
                            t["offs"], mode="mean", pad=5)},
         ["E", "B"])
    tensors = {"W": (W, True), "idx": (eidx, False), "bidx": (bidx, False),
               "offs": (offs, False)}
    case("tie_sparse_embedding_dense_bag", "a sparse embedding and a dense "
         "embedding_bag (sum) share W: the gradient becomes dense, the sum of "
         "both", tensors, [emb_node(sparse=True), bag_node(mode="sum")],
         lambda t: {"E": F.embedding(t["idx"], t["W"], sparse=True),
                    "B": bag_torch(t["bidx"], t["W"], t["offs"], mode="sum")},
         ["E", "B"])
    case("tie_scale_grad_by_freq_bag_only", "W shared by an embedding and an "
         "embedding_bag (sum) with scale_grad_by_freq: only the bag's "
         "contribution is scaled, by counts in the bag's input; values from "
         "the documented rule (PyTorch 1.13's CPU embedding_bag divides some "
         "rows by another index's count)", tensors,
         [emb_node(), bag_node(mode="sum", scale_grad_by_freq=True)],
         lambda t: {"E": F.embedding(t["idx"], t["W"]),
                    "B": bag_reference(t["bidx"], t["W"], t["offs"],
                                       mode="sum", scale=True)},
         ["E", "B"])


# ------------------------------------------------------------------ errors

def error_cases():
    W = rnd(5, 2)
    Wt = lambda: W.clone().requires_grad_()  # noqa: E731
    base = {"W": (W, True)}

    def emb_err(name, about, index, error, weight=None, safe=True, **kw):
        t = dict(base)
        if weight is not None:
            t["W"] = (weight, weight.dtype != I64)
        t["idx"] = (index, False)
        shape = list(index.shape) + [2]
        call = None
        if safe:
            call = lambda: F.embedding(index, t["W"][0], **kw)  # noqa: E731
        error_case(name, about, t, [emb_node(**kw)],
                   {"E": torch.zeros(shape, dtype=F64)}, error, call)

    emb_err("embedding_index_too_big", "embedding: index 5 into a 5-row "
            "weight is index_out_of_range", idx(0, 5, 1), "index_out_of_range")
    emb_err("embedding_index_negative", "embedding: a negative index (-1) is "
            "index_out_of_range", idx(0, -1), "index_out_of_range")
    emb_err("embedding_padding_too_big", "embedding: padding_idx=5 is outside "
            "[-5, 5): invalid_argument", idx(0, 1), "invalid_argument",
            padding_idx=5)
    emb_err("embedding_padding_too_small", "embedding: padding_idx=-6 is "
            "outside [-5, 5): invalid_argument", idx(0, 1), "invalid_argument",
            padding_idx=-6)
    emb_err("embedding_float_input", "embedding: a float index tensor is "
            "dtype_mismatch", torch.tensor([0.0, 1.0], dtype=F64),
            "dtype_mismatch", safe=False)
    emb_err("embedding_weight_1d", "embedding: a 1-D weight is shape_mismatch",
            idx(0, 1), "shape_mismatch", weight=rnd(5))
    emb_err("embedding_weight_i64", "embedding: an i64 weight is "
            "dtype_mismatch", idx(0, 1), "dtype_mismatch",
            weight=idx(1, 2, 3, 4, 5, 6).reshape(3, 2), safe=False)

    def bag_err(name, about, error, inp=idx(0, 1, 2, 3), offsets=idx(0, 2),
                psw=None, weight=None, nbags=2, safe=False, **kw):
        t = {"W": base["W"] if weight is None else
             (weight, weight.dtype != I64), "bidx": (inp, False)}
        if offsets is not None:
            t["offs"] = (offsets, False)
        if psw is not None:
            t["psw"] = (psw, True)
        node = bag_node(offsets="offs" if offsets is not None else None,
                        psw="psw" if psw is not None else None, **kw)
        call = None
        if safe:
            def call():
                return F.embedding_bag(
                    inp, Wt() if weight is None else weight, offsets,
                    mode=kw.get("mode", "mean"), per_sample_weights=psw,
                    padding_idx=kw.get("padding_idx"),
                    include_last_offset=kw.get("include_last_offset", False),
                    scale_grad_by_freq=kw.get("scale_grad_by_freq", False),
                    sparse=kw.get("sparse", False))
        error_case(name, about, t, [node],
                   {"B": torch.zeros(nbags, 2, dtype=F64)}, error, call)

    bag_err("bag_index_out_of_range", "embedding_bag: index 7 into a 5-row "
            "weight", "index_out_of_range", inp=idx(0, 1, 7, 3), safe=True,
            mode="sum")
    bag_err("bag_index_negative", "embedding_bag: a negative index",
            "index_out_of_range", inp=idx(0, -2, 1, 3), mode="sum",
            safe=True)
    bag_err("bag_offsets_not_zero", "embedding_bag: offsets [1, 3] do not "
            "start at 0", "bad_offsets", offsets=idx(1, 3), safe=True,
            mode="sum")
    bag_err("bag_offsets_decreasing", "embedding_bag: offsets [0, 3, 2] "
            "decrease", "bad_offsets", offsets=idx(0, 3, 2), nbags=3,
            mode="sum")
    bag_err("bag_offsets_past_end", "embedding_bag: offsets [0, 2, 5] run past "
            "the end of a 4-entry input", "bad_offsets", offsets=idx(0, 2, 5),
            nbags=3, mode="sum")
    bag_err("bag_offsets_include_last_mismatch", "embedding_bag with "
            "include_last_offset: offsets [0, 2, 3] must end at len(input) = "
            "4", "bad_offsets", offsets=idx(0, 2, 3), mode="sum",
            include_last_offset=True)
    bag_err("bag_offsets_empty", "embedding_bag: empty offsets (need at least "
            "one entry)", "bad_offsets", offsets=idx(), nbags=0, mode="sum")
    bag_err("bag_offsets_2d", "embedding_bag: offsets of shape [2, 1] are not "
            "1-D", "bad_offsets", offsets=idx(0, 2).reshape(2, 1), mode="sum")
    bag_err("bag_offsets_missing", "embedding_bag: a 1-D input without offsets",
            "bad_offsets", offsets=None, mode="sum", safe=True)
    bag_err("bag_offsets_with_2d_input", "embedding_bag: offsets given with a "
            "2-D input (one bag a row)", "bad_offsets",
            inp=idx(0, 1, 2, 3).reshape(2, 2), mode="sum", safe=True)
    bag_err("bag_offsets_float", "embedding_bag: float offsets are "
            "dtype_mismatch (indices and offsets are i64)", "dtype_mismatch",
            offsets=torch.tensor([0.0, 2.0], dtype=F64), mode="sum")
    bag_err("bag_float_input", "embedding_bag: a float input is "
            "dtype_mismatch", "dtype_mismatch",
            inp=torch.tensor([0.0, 1, 2, 3], dtype=F64), mode="sum")
    bag_err("bag_input_3d", "embedding_bag: a 3-D input is shape_mismatch "
            "(1-D with offsets or 2-D)", "shape_mismatch",
            inp=idx(0, 1, 2, 3).reshape(1, 2, 2), offsets=None, mode="sum",
            safe=True)
    bag_err("bag_weight_3d", "embedding_bag: a 3-D weight is shape_mismatch",
            "shape_mismatch", weight=rnd(5, 2, 1), mode="sum")
    bag_err("bag_padding_out_of_range", "embedding_bag: padding_idx=-6 is "
            "outside [-5, 5)", "invalid_argument", padding_idx=-6, mode="sum",
            safe=True)
    bag_err("bag_max_scale_grad_by_freq", "embedding_bag: scale_grad_by_freq "
            "is not allowed with mode max", "invalid_argument", mode="max",
            scale_grad_by_freq=True, safe=True)
    bag_err("bag_max_sparse", "embedding_bag: sparse is not allowed with mode "
            "max", "invalid_argument", mode="max", sparse=True, safe=True)
    bag_err("bag_unknown_mode", "embedding_bag: mode \"median\" is not sum, "
            "mean or max", "invalid_argument", mode="median", safe=True)
    bag_err("bag_psw_mean", "embedding_bag: per_sample_weights need mode sum "
            "(mean given)", "invalid_argument", psw=rnd(4), mode="mean",
            safe=True)
    bag_err("bag_psw_max", "embedding_bag: per_sample_weights need mode sum "
            "(max given)", "invalid_argument", psw=rnd(4), mode="max",
            safe=True)
    bag_err("bag_psw_shape", "embedding_bag: per_sample_weights of shape [3] "
            "for an input of shape [4]", "shape_mismatch", psw=rnd(3),
            mode="sum", safe=True)
    bag_err("bag_psw_dtype", "embedding_bag: f32 per_sample_weights with an "
            "f64 weight", "dtype_mismatch", psw=rnd(4, dtype=F32), mode="sum",
            safe=True)


def main():
    for f in os.listdir(CASES_DIR) if os.path.isdir(CASES_DIR) else []:
        if f.startswith("emb_") and f.endswith(".json"):
            os.remove(os.path.join(CASES_DIR, f))  # no stale cases
    embedding_cases()
    bag_mode_cases()
    bag_psw_cases()
    bag_max_tie_cases()
    tie_cases()
    error_cases()
    n = len([f for f in os.listdir(CASES_DIR) if f.startswith("emb_")])
    print("wrote %d cases to %s" % (n, os.path.normpath(CASES_DIR)))


if __name__ == "__main__":
    yoke_cli.set_torch_threads(yoke_cli.parser(__doc__).parse_args().threads)
    main()
