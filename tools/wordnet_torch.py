"""wordnet_torch -- the model of models/wordnet.c in PyTorch 1.13, for the
side-by-side comparison of models/WORDNET.md.

It reads the very inputs the C program trains on -- gloss token ids and bag
rows (member words and hashed bigrams), written by `wordnet --export DIR` --
so vocabulary, bigram buckets and split are identical, and builds the same
network with the same initialisation rules, batching, optimizers and
learning-rate schedule:

    gloss ids -> embedding(shared, padding_idx=0, sparse) -> K shifted narrows
      -> cat -> linear -> relu -> masked mean over positions
    bag rows  -> embedding_bag(shared | extra, mean, sparse)
    cat -> linear -> cross_entropy;  SparseAdam (tables) + Adam (dense)

(The bag over [shared | extra] is written as two embedding_bag calls whose
outputs are concatenated: the same numbers as one bag over the column
concatenation, without copying the table every step.) --conv1d uses
nn.Conv1d instead of narrow/cat/linear: the same function, PyTorch's own
convolution kernel.

    /usr/bin/python3 tools/wordnet_torch.py --export /tmp/wn-export \
        --epochs 2 --threads 2 [--csv torch.csv] [--untie] [--conv1d]

Per epoch it prints the train loss, test loss and accuracy, examples/s,
and the wall and CPU seconds of the training pass.
"""
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import yoke_cli


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            k, v = line.split()
            meta[k] = int(v)
    return meta


class Split:
    """One split: labels, gloss ids padded for the convolution, bag rows."""

    def __init__(self, path, max_len, kernel):
        labels, glosses, bags = [], [], []
        with open(path) as f:
            for line in f:
                lab, gloss, bag = line.rstrip("\n").split("\t")
                labels.append(int(lab))
                glosses.append([int(x) for x in gloss.split()])
                bags.append([int(x) for x in bag.split()])
        self.n = len(labels)
        self.label = np.array(labels, dtype=np.int64)
        self.gloss_len = np.array([len(g) for g in glosses], dtype=np.int64)
        left = (kernel - 1) // 2
        width = max(1, int(self.gloss_len.max(initial=1))) + kernel - 1
        # Row i: padding, gloss i at [left, left + len), padding.
        self.tokens = np.zeros((self.n, width), dtype=np.int64)
        for i, g in enumerate(glosses):
            self.tokens[i, left:left + len(g)] = g
        self.bag_len = np.array([len(b) for b in bags], dtype=np.int64)
        self.bag_start = np.concatenate([[0], np.cumsum(self.bag_len)[:-1]])
        self.bag = np.array([x for b in bags for x in b], dtype=np.int64)


def plan_epoch(split, batch, rng):
    """Batches as the C program makes them: shuffled, sorted by gloss length
    within chunks of 64 batches, batches shuffled; rng None: sorted."""
    n = split.n
    order = np.arange(n)
    chunk = 64 * batch if rng is not None else n
    if rng is not None:
        rng.shuffle(order)
    for s in range(0, n, chunk):
        part = order[s:s + chunk]
        order[s:s + chunk] = part[np.argsort(split.gloss_len[part],
                                             kind="stable")]
    starts = np.arange(0, n, batch)
    if rng is not None:
        rng.shuffle(starts)
    return [order[s:s + batch] for s in starts]


def make_batch(split, idx, kernel):
    lens = split.gloss_len[idx]
    L = max(1, int(lens.max()))
    tokens = torch.from_numpy(split.tokens[idx, :L + kernel - 1])
    pos = np.arange(L)[None, :]
    mask = np.where(pos < lens[:, None], 1.0 / np.maximum(lens, 1)[:, None],
                    0.0).astype(np.float32)
    mask = torch.from_numpy(mask).unsqueeze(2)
    blen = split.bag_len[idx]
    bag = np.concatenate([split.bag[s:s + l] for s, l in
                          zip(split.bag_start[idx], blen)])
    offsets = np.concatenate([[0], np.cumsum(blen)[:-1]])
    return (tokens, mask, torch.from_numpy(bag), torch.from_numpy(offsets),
            torch.from_numpy(split.label[idx]), L)


class Net(nn.Module):
    def __init__(self, a, vocab, rows, classes):
        super().__init__()
        D, D2, H, K = a.dim, a.extra_dim, a.hidden, a.kernel
        self.K, self.conv1d = K, a.conv1d
        self.embedding = nn.Parameter(torch.randn(rows, D) * a.init_std)
        self.gloss_embedding = None
        if a.untie:
            self.gloss_embedding = nn.Parameter(torch.randn(vocab, D) *
                                                a.init_std)
        gloss = self.gloss_table()
        with torch.no_grad():
            gloss[0].zero_()  # padding
            gloss[1].zero_()  # unknown word
        self.bag_extra = (nn.Parameter(torch.randn(rows, D2) * a.init_std)
                          if D2 else None)
        if a.conv1d:
            self.conv = nn.Conv1d(D, H, K)
            bound = 1 / math.sqrt(K * D)
            nn.init.uniform_(self.conv.weight, -bound, bound)
            nn.init.uniform_(self.conv.bias, -bound, bound)
        else:
            self.conv = nn.Linear(K * D, H)  # U(+-1/sqrt(K D)) as in C
        self.out = nn.Linear(H + D + D2, classes)

    def gloss_table(self):
        if self.gloss_embedding is not None:
            return self.gloss_embedding
        return self.embedding

    def tables(self):
        return [p for p in (self.embedding, self.gloss_embedding,
                            self.bag_extra) if p is not None]

    def encode_gloss(self, tokens, mask, L):
        e = F.embedding(tokens, self.gloss_table(), padding_idx=0,
                        sparse=True)
        if self.conv1d:
            h = F.relu(self.conv(e.transpose(1, 2))).transpose(1, 2)
        else:
            x = torch.cat([e.narrow(1, k, L) for k in range(self.K)], 2)
            h = F.relu(self.conv(x))
        return (h * mask).sum(1)

    def forward(self, tokens, mask, bag, offsets, L):
        parts = [self.encode_gloss(tokens, mask, L),
                 F.embedding_bag(bag, self.embedding, offsets, mode="mean",
                                 sparse=True)]
        if self.bag_extra is not None:
            parts.append(F.embedding_bag(bag, self.bag_extra, offsets,
                                         mode="mean", sparse=True))
        return self.out(torch.cat(parts, 1))


class Profile:
    """--profile: wall and CPU seconds per phase of a step."""

    PHASES = ("batch", "forward", "backward", "sparse_adam", "adam")

    def __init__(self, on):
        self.on = on
        self.wall = dict.fromkeys(self.PHASES, 0.0)
        self.cpu = dict.fromkeys(self.PHASES, 0.0)
        self.mark = (time.time(), time.process_time())

    def end(self, phase):
        if self.on:
            now = (time.time(), time.process_time())
            self.wall[phase] += now[0] - self.mark[0]
            self.cpu[phase] += now[1] - self.mark[1]
            self.mark = now

    def report(self, steps):
        if self.on and steps:
            print("profile, ms per step (wall / cpu): " + ", ".join(
                "%s %.3f / %.3f" % (p, 1e3 * self.wall[p] / steps,
                                    1e3 * self.cpu[p] / steps)
                for p in self.PHASES))


def evaluate(net, split, a):
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for idx in plan_epoch(split, 512, None):
            tokens, mask, bag, offsets, labels, L = make_batch(split, idx,
                                                               a.kernel)
            z = net(tokens, mask, bag, offsets, L)
            loss += F.cross_entropy(z, labels, reduction="sum").item()
            correct += (z.argmax(1) == labels).sum().item()
    net.train()
    return loss / split.n, correct / split.n


def export(a):
    """Runs `wordnet --export` when the folder has no export yet."""
    if os.path.exists(os.path.join(a.export, "meta.txt")):
        return
    os.makedirs(a.export, exist_ok=True)
    cmd = [a.wordnet, "--export", a.export, "--data", a.data,
           "--buckets", str(a.buckets), "--max-len", str(a.max_len),
           "--min-count", str(a.min_count)]
    subprocess.run(cmd, check=True)


def main():
    p = yoke_cli.parser(__doc__)
    p.add_argument("--export", required=True,
                   help="folder of `wordnet --export` (made if missing)")
    p.add_argument("--wordnet", default="build/wordnet",
                   help="the C program, to make the export")
    p.add_argument("--data", default="/usr/share/wordnet")
    p.add_argument("--buckets", type=int, default=200000)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--extra-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--constant-lr", action="store_true")
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--untie", action="store_true")
    p.add_argument("--conv1d", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--csv")
    p.add_argument("--profile", action="store_true",
                   help="print the wall and CPU ms per step of each phase")
    a = p.parse_args()

    torch.set_num_threads(a.threads or 1)
    torch.manual_seed(a.seed)
    export(a)
    meta = read_meta(os.path.join(a.export, "meta.txt"))
    if meta["buckets"] != a.buckets or meta["max_len"] != a.max_len:
        sys.exit("%s was exported with other --buckets/--max-len" % a.export)
    t0 = time.time()
    train = Split(os.path.join(a.export, "train.ids"), a.max_len, a.kernel)
    test = Split(os.path.join(a.export, "test.ids"), a.max_len, a.kernel)
    V, rows = meta["vocab"], meta["vocab"] + meta["buckets"]
    print("data: %d train, %d test, vocabulary %d, %.1f s" %
          (train.n, test.n, V, time.time() - t0))
    net = Net(a, V, rows, meta["classes"])
    tables = net.tables()
    dense = [q for q in net.parameters() if all(q is not t for t in tables)]
    opt_sparse = torch.optim.SparseAdam(tables, lr=a.lr)
    opt_dense = torch.optim.Adam(dense, lr=a.lr)
    nparams = sum(q.numel() for q in net.parameters())
    print("model: %s%s, %.2f M parameters, torch %s, %d threads" %
          ("untied" if a.untie else "tied", ", conv1d" if a.conv1d else "",
           nparams / 1e6, torch.__version__, torch.get_num_threads()))

    per_epoch = (train.n + a.batch - 1) // a.batch
    if a.max_steps:
        per_epoch = min(per_epoch, a.max_steps)
    total, step = per_epoch * a.epochs, 0
    rng = np.random.default_rng(a.seed)
    csv = open(a.csv, "w") if a.csv else None
    if csv:
        csv.write("epoch,train_loss,test_loss,test_accuracy,examples_per_s,"
                  "epoch_seconds,train_cpu_seconds,elapsed_seconds\n")
    start = time.time()
    for epoch in range(1, a.epochs + 1):
        batches = plan_epoch(train, a.batch, rng)[:per_epoch]
        w0, c0 = time.time(), time.process_time()
        loss_sum, seen = 0.0, 0
        prof = Profile(a.profile)
        for idx in batches:
            tokens, mask, bag, offsets, labels, L = make_batch(train, idx,
                                                               a.kernel)
            lr = a.lr if a.constant_lr else \
                0.5 * a.lr * (1 + math.cos(math.pi * min(step, total) / total))
            for o in (opt_sparse, opt_dense):
                for g in o.param_groups:
                    g["lr"] = lr
            opt_sparse.zero_grad(set_to_none=True)
            opt_dense.zero_grad(set_to_none=True)
            prof.end("batch")
            loss = F.cross_entropy(net(tokens, mask, bag, offsets, L), labels)
            loss_sum += loss.item()
            prof.end("forward")
            loss.backward()
            prof.end("backward")
            opt_sparse.step()
            prof.end("sparse_adam")
            opt_dense.step()
            prof.end("adam")
            seen += len(idx)
            step += 1
        wall, cpu = time.time() - w0, time.process_time() - c0
        prof.report(len(batches))
        e0 = time.time()
        test_loss, acc = evaluate(net, test, a)
        ev = time.time() - e0
        print("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy "
              "%.4f, %.0f examples/s (%.1f s train, cpu %.1f s; %.1f s eval; "
              "%.1f s total)" % (epoch, a.epochs, loss_sum / len(batches),
                                 test_loss, acc, seen / wall, wall, cpu, ev,
                                 time.time() - start), flush=True)
        if csv:
            csv.write("%d,%.6f,%.6f,%.6f,%.1f,%.3f,%.3f,%.3f\n" %
                      (epoch, loss_sum / len(batches), test_loss, acc,
                       seen / wall, wall + ev, cpu, time.time() - start))
            csv.flush()
    if csv:
        csv.close()


if __name__ == "__main__":
    main()
