#!/usr/bin/env python3
"""Time to accuracy: the same network and recipe trained by Petal and by PyTorch.

Writes the hard synthetic flowers once as PNG folders (`trainer synth --difficulty hard`,
a training and a validation set from different seeds), then for each seed trains the same
network with the same recipe in both: Petal through `trainer train --data TRAIN --val VAL`
(the whole process timed: decoding, augmentation, training, validation, checkpoints), and
PyTorch from the same decoded images (torch.manual_seed(seed); PyTorch's default init,
which is Petal's scheme: Kaiming-uniform a=sqrt(5) weights and biases, batch norms at 1/0;
SGD with momentum 0.9, nesterov off, weight decay, cosine annealing per step to 0, label
smoothing, random crop with zero padding 4 and horizontal flip drawn per image, batch 32,
shuffled each epoch, the last partial batch kept; inputs in [0, 1]). Prints each run's
validation accuracy after the last epoch and its wall time, and the means.

    python3 benches/time_to_accuracy.py [--arch resnet8] [--epochs 5] [--seeds 1,2,3]
        [--per-class 500] [--size 32] [--threads 2] [--trainer target/release/trainer]

Decoding for PyTorch is done once, outside its timing (PIL); its time is the training
loop with validation after each epoch, as Petal's runs do.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import petal_torch  # noqa: E402


def load_folder(d):
    classes = sorted(os.listdir(d))
    xs, ys = [], []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(d, c))):
            img = np.asarray(Image.open(os.path.join(d, c, f)).convert("RGB"), dtype=np.float32) / 255.0
            xs.append(img.transpose(2, 0, 1))
            ys.append(k)
    return torch.tensor(np.stack(xs)), torch.tensor(ys)


def augment(x, gen, pad=4):
    """Random crop with zero padding `pad` and a horizontal flip, drawn per image."""
    n, _, h, w = x.shape
    xp = nn.functional.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    for i in range(n):
        img = xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = img.flip(-1) if flip[i] else img
    return out


def torch_run(arch, tr, va, seed, a):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = tr
    net = petal_torch.build(petal_torch.preset_spec(arch, 5), list(x.shape[1:]))
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=a.weight_decay)
    steps = a.epochs * ((len(y) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    t = time.perf_counter()
    acc = 0.0
    for _ in range(a.epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        for b in range(0, len(y), a.batch):
            idx = order[b:b + a.batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(augment(x[idx], gen)), y[idx]).backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            acc = float((net(va[0]).argmax(1) == va[1]).float().mean())
    return acc, time.perf_counter() - t


def petal_run(arch, train_dir, val_dir, seed, a, out):
    cmd = [a.trainer, "train", "--arch", arch, "--data", train_dir, "--val", val_dir, "--size", str(a.size),
           "--rgb", "--epochs", str(a.epochs), "--batch-size", str(a.batch), "--lr", str(a.lr),
           "--lr-schedule", "cosine", "--weight-decay", str(a.weight_decay), "--label-smoothing",
           str(a.label_smoothing), "--augment", "flip,crop", "--seed", str(seed), "--threads", str(a.threads),
           "--out", out]
    t = time.perf_counter()
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t
    last = [l for l in text.splitlines() if l.startswith("epoch")][-1]
    return float(re.search(r"val\s+([0-9.]+) %", last).group(1)) / 100, wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet8")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trainer", default="target/release/trainer")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        train_dir, val_dir = os.path.join(d, "train"), os.path.join(d, "val")
        for out, n, seed in [(train_dir, a.per_class, 1), (val_dir, a.val_per_class, 2)]:
            subprocess.run([a.trainer, "synth", "--difficulty", "hard", "--per-class", str(n), "--size",
                            str(a.size), "--seed", str(seed), "--out", out], check=True, capture_output=True)
        tr, va = load_folder(train_dir), load_folder(val_dir)
        print(f"{a.arch}, hard synthetic flowers {a.size}x{a.size}: {len(tr[1])} training, {len(va[1])} validation "
              f"images; {a.epochs} epochs, batch {a.batch}, SGD lr {a.lr} cosine, wd {a.weight_decay}, label smoothing "
              f"{a.label_smoothing}, flip + crop 4; {a.threads} threads; torch {torch.__version__}", flush=True)
        rows = []
        for seed in [int(s) for s in a.seeds.split(",")]:
            pa, pt = petal_run(a.arch, train_dir, val_dir, seed, a, os.path.join(d, f"run{seed}"))
            ta, tt = torch_run(a.arch, tr, va, seed, a)
            rows.append((pa, pt, ta, tt))
            print(f"seed {seed}: petal {100 * pa:5.1f} % in {pt:6.1f} s | pytorch {100 * ta:5.1f} % in {tt:6.1f} s",
                  flush=True)
        m = [sum(r[i] for r in rows) / len(rows) for i in range(4)]
        print(f"mean:   petal {100 * m[0]:5.1f} % in {m[1]:6.1f} s | pytorch {100 * m[2]:5.1f} % in {m[3]:6.1f} s"
              f" | accuracy {100 * (m[0] - m[2]):+.1f} points, time {m[3] / m[1]:.2f}x")


if __name__ == "__main__":
    main()
