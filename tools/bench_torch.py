#!/usr/bin/python3
"""bench_torch -- tools/bench's benchmarks in PyTorch (1.13), same names,
shapes and JSON lines, for tools/bench_compare.py (see tools/BENCH.md).

    /usr/bin/python3 tools/bench_torch.py [--threads N] [--filter SUBSTR]
                                          [--reps N] [--quick]
    /usr/bin/python3 tools/bench_torch.py --list | --serve

Each benchmark prints one JSON line: name, impl ("torch"), shape fields,
threads, reps, inner, median_ms, min_ms, max_ms (wall time per step; per op
for overhead.add_chain), cpu_ms (median process CPU time per step), gbps (bytes of table rows looked up per second, where
it applies), gflops (matmul), peak_rss_mb, or "error".

Threads: torch.set_num_threads(T), and BLIS_NUM_THREADS=T in the
environment before torch is imported: Debian's PyTorch calls BLIS through
the BLAS interface, which takes its thread count from the environment only
(yoke hands BLIS its count per call).

Timing mirrors tools/bench.c: time.perf_counter (monotonic); two single
warm-up steps (the second sizes `inner`, the steps of one repetition, so
that a repetition lasts at least 20 ms), warm-up - 1 more repetitions, then
the timed repetitions; index sets drawn from seeded generators and rotated
between steps.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import yoke_cli

# --------------------------------------------------------------- sizes

MAX_SETS = 8


def full_sizes():
    return dict(V=1000000, D=64, B=2048, D2=16, emb_rows=256, emb_cols=50,
                seed_V=1000, seed_D=128, seed_bags=3, seed_L=7,
                train_V=100000, train_B=512, train_L=20, hidden=64,
                classes=10, mm_big=1024, chain_ops=100, chain_n=4,
                nsets=MAX_SETS, warmup=2, reps=10, target_ms=20.0)


def quick_sizes():
    """Tiny tables and batches, same bag lengths and widths (as bench.c)."""
    z = full_sizes()
    z.update(V=1000, B=16, emb_rows=8, train_V=1000, train_B=16, mm_big=64,
             nsets=2, warmup=1, reps=3, target_ms=1.0)
    return z


# ---------------------------------------------------------- benchmarks
#
# (name, kind, mode, L, sparse, variant): the list of tools/bench.c, in the
# same order. gather.* are plain C loops and optim.* time yoke's optimizer
# step alone: neither has a PyTorch counterpart here.

BENCHES = [
    ("bag.fwd.sum.L20", "bag_fwd", "sum", 20, False, None),
    ("bag.fwd.mean.L20", "bag_fwd", "mean", 20, False, None),
    ("bag.fwd.max.L20", "bag_fwd", "max", 20, False, None),
    ("bag.fwd.sum.L100", "bag_fwd", "sum", 100, False, None),
    ("bag.fwd.mean.L100", "bag_fwd", "mean", 100, False, None),
    ("bag.fwd.max.L100", "bag_fwd", "max", 100, False, None),
    ("bag.sgd.sparse.sum.L20", "bag_sgd", "sum", 20, True, None),
    ("bag.sgd.sparse.mean.L20", "bag_sgd", "mean", 20, True, None),
    ("bag.sgd.sparse.sum.L100", "bag_sgd", "sum", 100, True, None),
    ("bag.sgd.sparse.mean.L100", "bag_sgd", "mean", 100, True, None),
    ("bag.sgd.dense.sum.L20", "bag_sgd", "sum", 20, False, None),
    ("bag.sgd.dense.mean.L20", "bag_sgd", "mean", 20, False, None),
    ("bag.sgd.dense.max.L20", "bag_sgd", "max", 20, False, None),
    ("bag.sgd.dense.sum.L100", "bag_sgd", "sum", 100, False, None),
    ("bag.sgd.dense.mean.L100", "bag_sgd", "mean", 100, False, None),
    ("bag.sgd.dense.max.L100", "bag_sgd", "max", 100, False, None),
    ("ext.cat.sgd.sparse.L20", "ext_sgd", "mean", 20, True, "cat"),
    ("ext.cat.sgd.dense.L20", "ext_sgd", "mean", 20, False, "cat"),
    ("ext.split.sgd.sparse.L20", "ext_sgd", "mean", 20, True, "split"),
    ("emb.fwd", "emb_fwd", None, 0, False, None),
    ("emb.sgd.sparse", "emb_sgd", None, 0, True, None),
    ("emb.sgd.dense", "emb_sgd", None, 0, False, None),
    ("overhead.add_chain", "chain", None, 0, False, None),
    ("seed.bag_small.fwd_bwd", "seed", "mean", 0, False, None),
    ("train.sparse_adam+adam", "train", "mean", 20, True, "adam"),
    ("train.sgd", "train", "mean", 20, True, "sgd"),
    ("matmul.512x64x64", "matmul", None, 0, False, "hidden"),
    ("matmul.512x64x10", "matmul", None, 0, False, "classes"),
    ("matmul.1024x1024x1024", "matmul", None, 0, False, "big"),
    ("gather.plain.L20", "gather", "sum", 20, False, "plain"),
    ("gather.plain.L100", "gather", "sum", 100, False, "plain"),
    ("gather.prefetch.L20", "gather", "sum", 20, False, "prefetch"),
    ("gather.prefetch.L100", "gather", "sum", 100, False, "prefetch"),
    ("gather.thp.L20", "gather", "sum", 20, False, "thp"),
    ("gather.thp.L100", "gather", "sum", 100, False, "thp"),
    ("optim.sgd.V1e4", "optim", "mean", 4, True, "sgd"),
    ("optim.sgd.V1e6", "optim", "mean", 6, True, "sgd"),
    ("optim.adagrad.V1e4", "optim", "mean", 4, True, "adagrad"),
    ("optim.adagrad.V1e6", "optim", "mean", 6, True, "adagrad"),
    ("optim.sparse_adam.V1e4", "optim", "mean", 4, True, "sparse_adam"),
    ("optim.sparse_adam.V1e6", "optim", "mean", 6, True, "sparse_adam"),
    ("optim.rowwise_adagrad.V1e4", "optim", "mean", 4, True,
     "rowwise_adagrad"),
    ("optim.rowwise_adagrad.V1e6", "optim", "mean", 6, True,
     "rowwise_adagrad"),
    ("optim.adam.V1e4", "optim", "mean", 4, True, "adam"),
    ("optim.adam.V1e6", "optim", "mean", 6, True, "adam"),
]


class Bench:
    def __init__(self, name, kind, mode, L, sparse, variant):
        self.name, self.kind, self.mode = name, kind, mode
        self.L, self.sparse, self.variant = L, sparse, variant


def matmul_shape(b, z):
    if b.variant == "big":
        return z["mm_big"], z["mm_big"], z["mm_big"]
    return (z["train_B"], z["D"],
            z["hidden"] if b.variant == "hidden" else z["classes"])


def shape_fields(b, z):
    """The shape fields, named and ordered as bench.c writes them."""
    f = {}
    if b.kind in ("bag_fwd", "bag_sgd", "ext_sgd", "gather"):
        f.update(V=z["V"], D=z["D"])
        if b.kind == "ext_sgd":
            f["D2"] = z["D2"]
        f.update(B=z["B"], L=b.L, mode=b.mode)
    elif b.kind in ("emb_fwd", "emb_sgd"):
        f.update(V=z["V"], D=z["D"], rows=z["emb_rows"], cols=z["emb_cols"])
    elif b.kind == "chain":
        f.update(ops=z["chain_ops"], n=z["chain_n"])
    elif b.kind == "seed":
        f.update(V=z["seed_V"], D=z["seed_D"], B=z["seed_bags"],
                 L=z["seed_L"], mode="mean")
    elif b.kind == "train":
        f.update(V=z["train_V"], D=z["D"], B=z["train_B"], L=z["train_L"],
                 hidden=z["hidden"], classes=z["classes"])
    elif b.kind == "matmul":
        m, k, n = matmul_shape(b, z)
        f.update(M=m, K=k, N=n)
    elif b.kind == "optim":
        f.update(V=min(10 ** b.L, z["V"]), D=z["D"], rows=z["emb_rows"],
                 cols=z["emb_cols"], optimizer=b.variant)
    if b.kind in ("bag_sgd", "ext_sgd", "emb_sgd"):
        f["sparse"] = b.sparse
    return f


def bytes_gathered(b, z):
    """Lookups of one step times the bytes of a looked-up row (0: none)."""
    if b.kind in ("bag_fwd", "bag_sgd", "gather"):
        return z["B"] * b.L * z["D"] * 4
    if b.kind == "ext_sgd":
        return z["B"] * b.L * (z["D"] + z["D2"]) * 4
    if b.kind in ("emb_fwd", "emb_sgd"):
        return z["emb_rows"] * z["emb_cols"] * z["D"] * 4
    return 0


# ------------------------------------------------------------- the steps
#
# setup(b, z) returns step(): one step of the benchmark, index sets rotated.


def uniform(shape, seed, bound):
    g = torch.Generator().manual_seed(seed)
    return torch.empty(shape).uniform_(-bound, bound, generator=g)


def index_sets(z, shape, hi, seed):
    return [torch.randint(0, hi, shape,
                          generator=torch.Generator().manual_seed(seed + k))
            for k in range(z["nsets"])]


class Rotation:
    """The index set of each step, in turn."""

    def __init__(self, n):
        self.n, self.next = n, 0

    def __call__(self):
        k = self.next % self.n
        self.next += 1
        return k


def setup_lookup(b, z):
    """bag, extended bag and embedding benchmarks."""
    V, D = z["V"], z["D"]
    w = torch.nn.Parameter(uniform((V, D), 1, 0.1))
    params = [w]
    if b.kind in ("emb_fwd", "emb_sgd"):
        sets = index_sets(z, (z["emb_rows"], z["emb_cols"]), V, 100)
    else:
        sets = index_sets(z, (z["B"], b.L), V, 100)
    if b.kind == "ext_sgd":
        extra = torch.nn.Parameter(uniform((V, z["D2"]), 2, 0.1))
        params.append(extra)
    rot = Rotation(z["nsets"])

    def forward(idx):
        if b.kind in ("emb_fwd", "emb_sgd"):
            return F.embedding(idx, w, sparse=b.sparse)
        if b.kind != "ext_sgd":
            return F.embedding_bag(idx, w, mode=b.mode, sparse=b.sparse)
        if b.variant == "cat":  # the natural way: the cat inside the forward
            return F.embedding_bag(idx, torch.cat([w, extra], 1),
                                   mode=b.mode, sparse=b.sparse)
        # the hand-written way: two bags, then the cat of their outputs
        return torch.cat([F.embedding_bag(idx, w, mode=b.mode,
                                          sparse=b.sparse),
                          F.embedding_bag(idx, extra, mode=b.mode,
                                          sparse=b.sparse)], 1)

    if b.kind in ("bag_fwd", "emb_fwd"):
        def step():
            with torch.no_grad():  # inference: nothing saved for backward
                forward(sets[rot()])
        return step
    opt = torch.optim.SGD(params, lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        forward(sets[rot()]).sum().backward()
        opt.step()
    return step


def setup_chain(b, z):
    x = torch.nn.Parameter(uniform((z["chain_n"],), 1, 1.0))
    ops = z["chain_ops"]

    def step():
        x.grad = None
        y = x
        for _ in range(ops):
            y = y + x
        y.sum().backward()
    return step


def setup_seed(b, z):
    """The seed: nn.EmbeddingBag(1000, 128) (mean), 3 bags of 7 given flat
    with offsets [0, 7, 14]; backward of sum(output), dense gradient."""
    bag = torch.nn.EmbeddingBag(z["seed_V"], z["seed_D"], mode="mean")
    with torch.no_grad():
        bag.weight.copy_(uniform((z["seed_V"], z["seed_D"]), 1, 0.1))
    n = z["seed_bags"] * z["seed_L"]
    sets = index_sets(z, (n,), z["seed_V"], 100)
    offsets = torch.arange(0, n, z["seed_L"])
    rot = Rotation(z["nsets"])

    def step():
        bag.weight.grad = None
        bag(sets[rot()], offsets).sum().backward()
    return step


def setup_train(b, z):
    """EmbeddingBag(V, D, mean, sparse) -> Linear -> ReLU -> Linear -> CE;
    SparseAdam + Adam, or SGD for everything."""
    V, D, H, C = z["train_V"], z["D"], z["hidden"], z["classes"]
    emb = torch.nn.EmbeddingBag(V, D, mode="mean", sparse=True)
    with torch.no_grad():
        emb.weight.copy_(uniform((V, D), 1, 0.1))
    l1, l2 = torch.nn.Linear(D, H), torch.nn.Linear(H, C)
    sets = index_sets(z, (z["train_B"], z["train_L"]), V, 100)
    targets = index_sets(z, (z["train_B"],), C, 200)
    dense = list(l1.parameters()) + list(l2.parameters())
    if b.variant == "adam":
        opts = [torch.optim.SparseAdam(list(emb.parameters())),
                torch.optim.Adam(dense)]
    else:
        opts = [torch.optim.SGD(list(emb.parameters()) + dense, lr=0.01)]
    rot = Rotation(z["nsets"])

    def step():
        for o in opts:
            o.zero_grad(set_to_none=True)
        k = rot()
        logits = l2(torch.relu(l1(emb(sets[k]))))
        F.cross_entropy(logits, targets[k]).backward()
        for o in opts:
            o.step()
    return step


def setup_matmul(b, z):
    m, k, n = matmul_shape(b, z)
    a, bb = uniform((m, k), 1, 1.0), uniform((k, n), 2, 1.0)

    def step():
        torch.matmul(a, bb)
    return step


SETUP = {"bag_fwd": setup_lookup, "bag_sgd": setup_lookup,
         "ext_sgd": setup_lookup, "emb_fwd": setup_lookup,
         "emb_sgd": setup_lookup, "chain": setup_chain, "seed": setup_seed,
         "train": setup_train, "matmul": setup_matmul}

# -------------------------------------------------------------- timing


def timed_steps(step, inner):
    """(wall ms, process CPU ms) per step over inner steps."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(inner):
        step()
    return ((time.perf_counter() - t0) * 1e3 / inner,
            (time.process_time() - c0) * 1e3 / inner)


def median_of(v):
    h = len(v) // 2
    return v[h] if len(v) % 2 else (v[h - 1] + v[h]) / 2


def measure(step, z):
    """As bench.c: two single warm-up steps (the second sizes inner),
    warmup - 1 more repetitions, then reps timed repetitions. Returns
    inner, median, min, max (wall ms per step) and the median CPU ms."""
    timed_steps(step, 1)
    first = timed_steps(step, 1)[0]
    inner = int(min(max(math.ceil(z["target_ms"] / max(first, 1e-4)), 1),
                    100000))
    for _ in range(1, z["warmup"]):
        timed_steps(step, inner)
    runs = [timed_steps(step, inner) for _ in range(z["reps"])]
    times = sorted(w for w, _ in runs)
    cpu = sorted(c for _, c in runs)
    return inner, median_of(times), times[0], times[-1], median_of(cpu)


# --------------------------------------------------------- peak memory


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------- output


def sig6(x):
    return float("%.6g" % x)


def run_bench(b, z, threads):
    """Runs one benchmark and prints its line; True when it ran."""
    reset_peak_rss()
    line = {"name": b.name, "impl": "torch"}
    line.update(shape_fields(b, z))
    line["threads"] = threads
    ok = False
    try:
        if b.kind in ("gather", "optim"):
            raise NotImplementedError("yoke only, no PyTorch counterpart")
        step = SETUP[b.kind](b, z)
        inner, med, lo, hi, cpu = measure(step, z)
        per = z["chain_ops"] if b.kind == "chain" else 1
        line.update(reps=z["reps"], inner=inner)
        if b.kind == "chain":
            line.update(per_op=True, step_ms=sig6(med))
        line.update(median_ms=sig6(med / per), min_ms=sig6(lo / per),
                    max_ms=sig6(hi / per), cpu_ms=sig6(cpu / per))
        nbytes = bytes_gathered(b, z)
        if nbytes:
            line["gbps"] = sig6(nbytes / (med * 1e6))
        if b.kind == "matmul":
            m, k, n = matmul_shape(b, z)
            line["gflops"] = sig6(2.0 * m * k * n / (med * 1e6))
        ok = True
    except (RuntimeError, NotImplementedError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        line["error"] = "%s: %s" % (type(e).__name__, first[:300])
    line["peak_rss_mb"] = sig6(peak_rss_mb())
    print(json.dumps(line, separators=(",", ":")), flush=True)
    return ok


def serve(z, threads):
    """--serve: one exact benchmark name a line on stdin."""
    by_name = {b.name: b for b in map(lambda t: Bench(*t), BENCHES)}
    ok = True
    for raw in sys.stdin:
        name = raw.strip()
        if not name:
            continue
        if name in by_name:
            ok &= run_bench(by_name[name], z, threads)
        else:
            print(json.dumps({"name": name, "impl": "torch",
                              "error": "unknown benchmark"}), flush=True)
            ok = False
    return ok


def parse_args():
    p = argparse.ArgumentParser(
        description="tools/bench's benchmarks in PyTorch: one JSON line "
        "each (see tools/BENCH.md).")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads and BLIS_NUM_THREADS "
                   "(default 1)")
    p.add_argument("--filter", default=None,
                   help="only the benchmarks whose name contains SUBSTR")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions (default 10; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, for a smoke test of a few seconds")
    p.add_argument("--list", action="store_true",
                   help="print the benchmark names and exit")
    p.add_argument("--serve", action="store_true",
                   help="read benchmark names from stdin, one a line")
    p.add_argument("--version", action="store_true",
                   help="print the version of PyTorch and exit")
    a = p.parse_args()
    if a.threads < 1 or (a.reps is not None and a.reps < 1):
        p.error("--threads and --reps must be at least 1")
    return a


def main():
    a = parse_args()
    if a.list:
        for t in BENCHES:
            if a.filter is None or a.filter in t[0]:
                print(t[0])
        return 0
    # Before torch loads BLIS (see the top of this file).
    os.environ["BLIS_NUM_THREADS"] = str(a.threads)
    global torch, F
    import torch
    import torch.nn.functional as F
    if a.version:
        print("bench_torch.py (yoke) %s, torch %s" % (yoke_cli.version(),
                                                       torch.__version__))
        return 0
    torch.set_num_threads(a.threads)
    z = quick_sizes() if a.quick else full_sizes()
    if a.reps:
        z["reps"] = a.reps
    if a.serve:
        return 0 if serve(z, a.threads) else 1
    ok = True
    for t in BENCHES:
        if a.filter is None or a.filter in t[0]:
            ok &= run_bench(Bench(*t), z, a.threads)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
