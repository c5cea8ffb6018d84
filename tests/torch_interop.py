#!/usr/bin/env python3
"""Loads a Petal checkpoint into the equivalent PyTorch nn.Sequential and compares predictions.

Not part of CI (PyTorch is heavy). Run:
    pip install torch numpy safetensors
    cargo run --release -p petal-model --example export_for_torch -- /tmp/petal-interop seednet
    python3 tests/torch_interop.py /tmp/petal-interop

It rebuilds the network from the checkpoint's own `spec` metadata (the grammar of the
README), calls `model.load_state_dict(safetensors.torch.load_file(path))` (strict: every
tensor name and shape must match), runs the same inputs, and prints the largest
difference from Petal's probabilities. Exit status 1 if it exceeds 1e-5.
"""
import json
import re
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def build(spec: str, input_shape):
    c, h, w = input_shape
    layers, flat = [], None
    for tok in spec.split(","):
        parts = [p.strip() for p in tok.strip().split("/")]
        head, opts = parts[0], parts[1:]
        m = re.fullmatch(r"conv(\d+)(?:x(\d+))?:(\d+)", head)
        if m:
            kh = int(m[1]); kw = int(m[2] or m[1]); out = int(m[3])
            stride = next((int(o[1:]) for o in opts if o.startswith("s")), 1)
            pad = next((int(o[1:]) for o in opts if o.startswith("p")), 0)
            layers.append(torch.nn.Conv2d(c, out, (kh, kw), stride=stride, padding=pad, bias="nobias" not in opts))
            c, h, w = out, (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
            continue
        m = re.fullmatch(r"maxpool(\d+)", head)
        if m:
            k = int(m[1]); s = next((int(o[1:]) for o in opts if o.startswith("s")), k)
            layers.append(torch.nn.MaxPool2d(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
            continue
        if head == "relu":
            layers.append(torch.nn.ReLU()); continue
        if head == "flatten":
            layers.append(torch.nn.Flatten()); flat = c * h * w; continue
        m = re.fullmatch(r"dense:(\d+)", head)
        if m:
            layers.append(torch.nn.Linear(flat, int(m[1]), bias="nobias" not in opts)); flat = int(m[1]); continue
        raise ValueError(f"unknown layer {tok}")
    return torch.nn.Sequential(*layers)


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/petal-interop")
    ckpt = d / "model.safetensors"
    out = json.loads((d / "petal_outputs.json").read_text())
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    spec, shape = meta["spec"], json.loads(meta["input_shape"])
    model = build(spec, shape).float().eval()
    model.load_state_dict(load_file(str(ckpt)))  # strict: names and shapes must match
    x = torch.tensor(out["input"], dtype=torch.float32).reshape(out["batch"], *shape)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).reshape(-1)
    petal = torch.tensor(out["probs"], dtype=torch.float32)
    diff = (probs - petal).abs().max().item()
    agree = (probs.reshape(out["batch"], -1).argmax(1) == petal.reshape(out["batch"], -1).argmax(1)).all().item()
    print(f"{spec} on {shape}: torch {torch.__version__}, max |p_torch - p_petal| = {diff:.3e}, argmax agree: {agree}")
    print(f"metadata: classes={meta['classes']} normalization={meta['normalization']} epoch={meta['epoch']} step={meta['step']}")
    sys.exit(0 if diff < 1e-5 and agree else 1)


if __name__ == "__main__":
    main()
