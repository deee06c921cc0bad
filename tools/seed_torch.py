"""seed_torch -- what PyTorch 1.13 does with the seed's code, and reference
cases for models/seed_examples with the tie done correctly.

    /usr/bin/python3 tools/seed_torch.py          # prints the facts, writes
                                                  # tests/cases/seed_*.json

Part 1 runs the seed's three snippets as written (nn.Embedding(_weight=W),
nn.EmbeddingBag(_weight=W), nn.Parameter(torch.cat([W, S], -1))) and prints
what happens to the tie: models/README.md quotes this output.

Part 2 writes case files at the seed's sizes (vocab 1000, dim 128, extra 16,
input (5, 10), bags 3 x 7, mean) with the tie done the correct PyTorch way:
one Parameter W read by F.embedding and F.embedding_bag, and torch.cat([W, S])
inside the forward, so gradients reach W and S. The test suite evaluates
them with tools/gradcheck against yoke.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from yoke_cases import write_case
import yoke_cli

V, D, D2 = 1000, 128, 16


def seed_as_written():
    torch.manual_seed(0)
    W = nn.Parameter(torch.randn(V, D))
    emb = nn.Embedding(V, D, _weight=W)
    bag = nn.EmbeddingBag(V, D, _weight=W, mode="mean")
    print("snippets 1-2, nn.Embedding(_weight=W) and nn.EmbeddingBag(_weight=W):")
    print("  embedding_layer.weight is W:", emb.weight is W,
          "| is embedding_bag_layer.weight:", emb.weight is bag.weight,
          "| same storage:", emb.weight.data_ptr() == bag.weight.data_ptr())
    model = nn.ModuleDict({"emb": emb, "bag": bag})
    print("  parameters the optimizer sees:", len(list(model.parameters())))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    # token 7 is both in the sequence and in a bag
    seq = torch.tensor([[7, 1, 2]])
    bags, offsets = torch.tensor([7, 3, 4]), torch.tensor([0])
    loss = emb(seq).sum() + bag(bags, offsets).sum()
    loss.backward()
    before = W.detach()[7].clone()
    opt.step()
    moved = (W.detach()[7] - before).abs().max().item()
    print("  Adam states after one step:", len(opt.state),
          "| row 7 (used by both) moved by %.3f with lr 0.1 (one step of one"
          " state moves at most 0.1)" % moved)

    S = nn.Parameter(torch.randn(V, D2))
    combined = nn.Parameter(torch.cat([W, S], dim=-1))
    ext = nn.EmbeddingBag(V, D + D2, _weight=combined, mode="mean")
    W.grad = None
    ext(bags, offsets).sum().backward()
    print("snippet 3, nn.Parameter(torch.cat([W, S], dim=-1)):")
    print("  after backward through the extended bag: W.grad is None:",
          W.grad is None, "| S.grad is None:", S.grad is None,
          "| the concatenation has its own gradient:", ext.weight.grad is not None)


def seed_cases():
    """The three uses at the seed's sizes, tied correctly, as case files."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(V, D, generator=g)
    S = torch.randn(V, D2, generator=g)
    seq = torch.randint(0, V, (5, 10), generator=g)
    bags = torch.randint(0, V, (3, 7), generator=g).flatten()
    offsets = torch.tensor([0, 7, 14])
    t_e = torch.randn(5, 10, D, generator=g)
    t_b = torch.randn(3, D, generator=g)
    t_x = torch.randn(3, D + D2, generator=g)

    Wp, Sp = W.clone().requires_grad_(), S.clone().requires_grad_()
    E = F.embedding(seq, Wp)
    B = F.embedding_bag(bags, Wp, offsets, mode="mean")
    X = F.embedding_bag(bags, torch.cat([Wp, Sp], dim=1), offsets, mode="mean")
    LE, LB, LX = (F.mse_loss(E, t_e), F.mse_loss(B, t_b), F.mse_loss(X, t_x))
    L = LE + LB + LX
    L.backward()

    tensors = {"W": (W, True), "S": (S, True), "seq": (seq, False),
               "bags": (bags, False), "offsets": (offsets, False),
               "t_e": (t_e, False), "t_b": (t_b, False), "t_x": (t_x, False)}
    nodes = [
        {"name": "E", "op": "embedding", "inputs": {"input": "seq", "weight": "W"}},
        {"name": "B", "op": "embedding_bag",
         "inputs": {"input": "bags", "weight": "W", "offsets": "offsets"},
         "attrs": {"mode": "mean"}},
        {"name": "C", "op": "cat", "inputs": {"tensors": ["W", "S"]}, "attrs": {"dim": 1}},
        {"name": "X", "op": "embedding_bag",
         "inputs": {"input": "bags", "weight": "C", "offsets": "offsets"},
         "attrs": {"mode": "mean"}},
        {"name": "LE", "op": "mse_loss", "inputs": {"input": "E", "target": "t_e"}},
        {"name": "LB", "op": "mse_loss", "inputs": {"input": "B", "target": "t_b"}},
        {"name": "LX", "op": "mse_loss", "inputs": {"input": "X", "target": "t_x"}},
        {"name": "LEB", "op": "add", "inputs": {"input": "LE", "other": "LB"}},
        {"name": "L", "op": "add", "inputs": {"input": "LEB", "other": "LX"}},
    ]
    one = torch.tensor(1.0)
    write_case("seed_three_uses_tied",
               "the seed's three snippets at its sizes (V 1000, D 128, extra 16,"
               " mean), tied the correct PyTorch way: one Parameter W read by"
               " embedding and embedding_bag, torch.cat([W, S]) inside the"
               " forward; W's gradient is the sum of three uses, S gets the"
               " extended bag's columns",
               tensors, nodes, {"L": one},
               values={"E": E, "B": B, "X": X, "L": L},
               grads={"W": Wp.grad, "S": Sp.grad})

    # One Adam step over the same graph: one state per parameter.
    Wq, Sq = W.clone().requires_grad_(), S.clone().requires_grad_()
    opt = torch.optim.Adam([Wq, Sq], lr=0.01)
    opt.zero_grad()
    loss = (F.mse_loss(F.embedding(seq, Wq), t_e)
            + F.mse_loss(F.embedding_bag(bags, Wq, offsets, mode="mean"), t_b)
            + F.mse_loss(F.embedding_bag(bags, torch.cat([Wq, Sq], 1), offsets,
                                         mode="mean"), t_x))
    loss.backward()
    opt.step()
    write_case("seed_three_uses_adam_step",
               "as seed_three_uses_tied, then one Adam step (lr 0.01) with one"
               " state for W and one for S",
               tensors, nodes, {"L": one},
               optimizer={"steps": 1, "groups": [
                   {"name": "adam", "leaves": ["W", "S"], "params": {"lr": 0.01}}]},
               params={"W": Wq, "S": Sq})


if __name__ == "__main__":
    yoke_cli.set_torch_threads(yoke_cli.parser(__doc__).parse_args().threads)
    seed_as_written()
    seed_cases()
