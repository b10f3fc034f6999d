#!/usr/bin/env python3
"""PyTorch reference for the associative-recall half of experiments/attention_ablation.ini.

The same task as plugins/tasks/associative_recall (multi-query associative recall, Zoology): each
example is `pairs` key-value pairs (keys from the first half of `vocab` symbols, values from the
second), then `queries` of the presented keys in random order, padded to seq_len; only the query
positions are scored. The model is labrun's model/gpt (learned token and position embeddings,
pre-LayerNorm blocks, GELU MLP 4x, biases, output tied to the token embedding; N(0, 0.02) init and
residual projections scaled by 1/sqrt(2 * layers)) with softmax or linear (elu+1) attention;
AdamW, linear warm-up then linear decay, gradient clipping at 1. It prints val/accuracy at each
evaluation so the two implementations' learning curves can be compared on the same machine:

    python3 bench/torch_mqar.py --attention softmax --seed 1
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def make_zoology_batch(rng, n, vocab, pairs, queries, seq_len):
    """Zoology's layout: distinct keys and values (keys from 1 .. vocab/2 - 1), then each asked key
    at an even offset after the context (power-law gaps, a = 0.01), 0 everywhere else."""
    inputs = np.zeros((n, seq_len), dtype=np.int64)
    targets = np.full((n, seq_len), -100, dtype=np.int64)
    space = (seq_len - 2 * pairs) // 2
    p = 0.01 * np.arange(1, space + 1) ** (0.01 - 1)
    p = p / p.sum()
    for b in range(n):
        keys = 1 + rng.permutation(vocab // 2 - 1)[:pairs]
        values = vocab // 2 + rng.permutation(vocab - vocab // 2)[:pairs]
        inputs[b, 0:2 * pairs:2] = keys
        inputs[b, 1:2 * pairs:2] = values
        gaps = rng.choice(space, size=queries, replace=False, p=p)
        asked = rng.permutation(pairs)[:queries]
        pos = 2 * pairs + 2 * gaps
        inputs[b, pos] = keys[asked]
        targets[b, pos] = values[asked]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def make_batch(rng, n, vocab, pairs, queries, seq_len):
    pad = vocab
    inputs = np.full((n, seq_len), pad, dtype=np.int64)
    targets = np.full((n, seq_len), -100, dtype=np.int64)
    for b in range(n):
        keys = rng.permutation(vocab // 2)[:pairs]
        values = vocab // 2 + rng.integers(0, vocab - vocab // 2, size=pairs)
        inputs[b, 0:2 * pairs:2] = keys
        inputs[b, 1:2 * pairs:2] = values
        asked = rng.permutation(pairs)[:queries]
        inputs[b, 2 * pairs:2 * pairs + queries] = keys[asked]
        targets[b, 2 * pairs:2 * pairs + queries] = values[asked]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


class Attention(nn.Module):
    def __init__(self, C, H, kind):
        super().__init__()
        self.H, self.kind = H, kind
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        if self.kind == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # linear (Katharopoulos et al. 2020), causal by cumulative sums
            q, k = F.elu(q) + 1, F.elu(k) + 1
            kv = torch.einsum("bhtd,bhte->bhtde", k, v).cumsum(dim=2)
            num = torch.einsum("bhtd,bhtde->bhte", q, kv)
            den = torch.einsum("bhtd,bhtd->bht", q, k.cumsum(dim=2)).unsqueeze(-1) + 1e-6
            y = num / den
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, C, H, kind):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.attn = Attention(C, H, kind)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, V, T, C, H, L, kind, init):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, H, kind) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        if init == "torch":  # PyTorch's defaults: embeddings N(0, 1), linear layers Kaiming-uniform
            return
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attention", choices=["softmax", "linear"], default="softmax")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", choices=["labrun", "zoology"], default="labrun")
    ap.add_argument("--init", choices=["gpt2", "torch"], default="gpt2",
                    help="gpt2: labrun's model/gpt initialisation; torch: PyTorch's module defaults")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Gpt(args.vocab + 1, args.seq_len, args.hidden, args.heads, args.layers, args.attention, args.init)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    batches = make_zoology_batch if args.layout == "zoology" else make_batch
    val_x, val_y = batches(np.random.default_rng(10_000 + args.seed), 512, args.vocab, args.pairs, args.queries,
                              args.seq_len)

    def lr_at(step):  # step 0-based, as labrun's linear schedule
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return args.lr * max(0.0, (args.steps - step) / (args.steps - args.warmup))

    start = time.time()
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1)
        x, y = batches(rng, args.batch, args.vocab, args.pairs, args.queries, args.seq_len)
        loss = F.cross_entropy(model(x).view(-1, args.vocab + 1), y.view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                logits = model(val_x)
                mask = val_y != -100
                acc = (logits.argmax(-1)[mask] == val_y[mask]).float().mean().item()
            print(f"step {step}: loss {loss.item():.4f} val/accuracy {acc:.4f} ({time.time() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
