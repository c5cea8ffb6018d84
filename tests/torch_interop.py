#!/usr/bin/env python3
"""Loads a Petal checkpoint into the equivalent PyTorch nn.Sequential and compares predictions.

Not part of CI (PyTorch is heavy). Run:
    pip install torch numpy safetensors
    cargo run --release -p petal-model --example export_for_torch -- /tmp/petal-interop seednet
    python3 tests/torch_interop.py /tmp/petal-interop

It rebuilds the network from the checkpoint's own `spec` metadata with
`python/petal_torch.py` (the grammar of the README, residual blocks included), loads
`model.safetensors` strictly (every tensor name and shape must match; BatchNorm's
`num_batches_tracked` an int64 scalar), runs the inputs of `petal_outputs.json` and
prints the largest difference from Petal's probabilities:

- `probs`: Petal's probabilities in inference mode, compared with `model.eval()`
  (BatchNorm uses the stored running statistics, dropout is off);
- `train_probs` (optional): Petal's probabilities in training mode on the same input,
  computed before any update (BatchNorm normalises with the batch statistics), compared
  with `model.train()`. Skipped, with a note, for a spec with dropout: PyTorch cannot
  draw Petal's dropout masks.

Exit status 1 if a maximum difference exceeds the tolerance (1e-5; 1e-4 for specs with
`bn`) or the eval argmaxes disagree.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
import petal_torch  # noqa: E402  (python/petal_torch.py)

# Probabilities of a plain conv/dense network agree to ~1e-7 in f32; 1e-5 leaves room.
TOL = 1e-5
# With BatchNorm the two float32 implementations differ more, and the difference grows
# with depth: every bn divides by sqrt(var + 1e-5), which magnifies the rounding of the
# layers before it by gamma / sqrt(var + eps) (up to ~300 for a channel of near-zero
# variance, common after a ReLU in a trained network), and in training mode the batch
# mean and variance are f32 reductions over N*H*W values that Petal and PyTorch sum in
# different orders (a one-pass E[x^2] - E[x]^2 loses more). A ResNet stacks a dozen such
# layers. Between PyTorch's own f32 and f64 forward of resnet20 at initialisation the
# probabilities differ by < 1e-7; 1e-4 leaves room for trained weights and still catches a
# missing shortcut, a wrong eps or momentum or a missed running-statistic update. Subtler
# mistakes (biased vs unbiased variance) are for the float64 fixture
# tests/fixtures/torch_resnet_small_seed1.json to catch.
TOL_BN = 1e-4


def _has(model, cls):
    return any(isinstance(m, cls) for m in model.modules())


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/petal-interop")
    ckpt = d / "model.safetensors"
    out = json.loads((d / "petal_outputs.json").read_text())
    model, meta = petal_torch.load(ckpt)  # strict: names, shapes and dtypes must match; eval mode
    spec, shape = meta["spec"], meta["input_shape"]
    batch = out["batch"]
    has_bn = _has(model, torch.nn.BatchNorm2d)
    tol = TOL_BN if has_bn else TOL
    x = torch.tensor(out["input"], dtype=torch.float32).reshape(batch, *shape)

    with torch.no_grad():
        probs = torch.softmax(model.eval()(x), dim=1)
    petal = torch.tensor(out["probs"], dtype=torch.float32).reshape(batch, -1)
    diff = (probs - petal).abs().max().item()
    agree = bool((probs.argmax(1) == petal.argmax(1)).all().item())
    print(f"{spec} on {shape}: torch {torch.__version__}, max |p_torch - p_petal| = {diff:.3e}, "
          f"argmax agree: {agree}  (eval mode, tolerance {tol:g})")
    ok = diff < tol and agree

    if "train_probs" in out:
        if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
            print("train_probs: skipped (the spec has dropout; Petal's masks cannot be reproduced)")
        else:
            # Training mode normalises with the batch statistics (and updates the running
            # statistics, which nothing reads afterwards).
            with torch.no_grad():
                tprobs = torch.softmax(model.train()(x), dim=1)
            tpetal = torch.tensor(out["train_probs"], dtype=torch.float32).reshape(batch, -1)
            tdiff = (tprobs - tpetal).abs().max().item()
            print(f"train mode: max |p_torch - p_petal| = {tdiff:.3e}  (tolerance {tol:g})")
            ok = ok and tdiff < tol
            model.eval()

    j = lambda k: json.dumps(meta.get(k))  # noqa: E731  (as the metadata holds them)
    print(f"metadata: classes={j('classes')} normalization={j('normalization')} "
          f"epoch={j('epoch')} step={j('step')}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
