#!/usr/bin/env python3
"""Petal network specs and checkpoints in PyTorch.

Petal (the Rust workspace of this repository) writes networks as one-line specs and
checkpoints as safetensors files whose tensor names are those of the equivalent PyTorch
``nn.Sequential``'s ``state_dict``. This module is the PyTorch side of that contract:

- :func:`parse_spec` reads a spec string into a tree of :class:`Layer` and :class:`Res`
  nodes (the grammar is in ``python/README.md`` and the main ``README.md``; the parser,
  formatter, shape inference and presets are ``petal_spec.py``'s, standard library only,
  re-exported here);
- :func:`build` turns a spec (string or tree) and an input shape ``[c, h, w]`` into an
  ``nn.Sequential`` whose ``state_dict`` names and shapes are Petal's;
- :func:`load` rebuilds the network of a Petal checkpoint from its ``spec`` and
  ``input_shape`` metadata and loads its tensors with ``load_state_dict(strict=True)``;
- :func:`format_spec` / :func:`canonical_spec` write a tree back as the canonical spec
  (implied ``flatten`` and projection shortcuts written out, default options left out).

Layer mapping (one spec layer is one entry of the ``nn.Sequential``; an implied
``flatten`` before a ``dense`` that follows spatial layers counts as one too)::

    convKxK:N / convKHxKW:N [/sS] [/pP] [/nobias]  nn.Conv2d(c, N, (KH, KW), S, P, bias)
    bn                                               nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    relu                                             nn.ReLU()
    maxpoolK [/sS]                                   nn.MaxPool2d(K, S)   (S defaults to K)
    avgpoolK [/sS]                                   nn.AvgPool2d(K, S)   (S defaults to K)
    gap                                              nn.AdaptiveAvgPool2d(1)
    dropout:P                                        nn.Dropout(P)
    flatten                                          nn.Flatten()
    dense:N [/nobias]                                nn.Linear(features, N, bias)
    res(B1,...[|S1,...])                             Residual(body, shortcut)

A :class:`Residual` has two ``nn.Sequential`` attributes, ``body`` and ``shortcut``
(empty for an identity shortcut; a block without ``|`` whose body changes the shape gets
Petal's projection ``conv1x1:C/sS/nobias,bn``) and returns ``body(x) + shortcut(x)``; its tensors are
named ``{i}.body.{j}.weight``, ``{i}.shortcut.{j}.running_mean``, and so on, recursively
for nested blocks.

Only torch, numpy and safetensors are needed. The command line::

    python3 python/petal_torch.py CHECKPOINT [--spec] [--input-shape C,H,W]

prints the rebuilt module, its parameter count and the checkpoint's metadata.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence, Tuple, Union

import torch
from torch import nn

try:
    import petal_spec  # noqa: F401
except ImportError:  # imported by file path: petal_spec.py lies beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
# The spec grammar, shapes and presets (pure Python), re-exported as petal_torch's API.
from petal_spec import (  # noqa: E402,F401
    MAX_SPEC_NUMBER, PRESETS, Layer, NetworkInfo, Node, Res, Shape, SpecError, canonical_spec,
    format_spec, infer, network, parse_spec, preset_spec, resolve_arch, shape_text)

__all__ = [
    "SpecError",
    "Layer",
    "Res",
    "Residual",
    "parse_spec",
    "format_spec",
    "canonical_spec",
    "infer",
    "network",
    "build",
    "load",
    "preset_spec",
    "resolve_arch",
    "param_count",
    "BN_EPS",
    "BN_MOMENTUM",
]

#: BatchNorm2d constants of the `bn` layer (PyTorch's defaults).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1

# ----------------------------------------------------------------------------- modules


class Residual(nn.Module):
    """A residual block: ``forward(x) = body(x) + shortcut(x)``.

    ``body`` and ``shortcut`` are ``nn.Sequential``; an empty ``shortcut`` is the
    identity (an empty ``nn.Sequential`` returns its input). A ReLU after the addition is
    a separate layer of the enclosing ``nn.Sequential``.
    """

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _modules(nodes: Sequence[Node], shape: Shape) -> Tuple[nn.Sequential, Shape]:
    mods = []
    for n in nodes:
        if isinstance(n, Res):
            body, bshape = _modules(n.body, shape)
            short, _ = _modules(n.shortcut, shape)
            mods.append(Residual(body, short))
            shape = bshape
            continue
        a, k = n.args, n.kind
        if k == "conv":
            mods.append(nn.Conv2d(shape[0], a["out_c"], (a["kh"], a["kw"]), stride=a["stride"],
                                  padding=a["pad"], bias=a["bias"]))
            c, h, w = shape
            shape = (a["out_c"], (h + 2 * a["pad"] - a["kh"]) // a["stride"] + 1,
                     (w + 2 * a["pad"] - a["kw"]) // a["stride"] + 1)
        elif k == "bn":
            mods.append(nn.BatchNorm2d(shape[0], eps=BN_EPS, momentum=BN_MOMENTUM, affine=True))
        elif k == "relu":
            mods.append(nn.ReLU())
        elif k in ("maxpool", "avgpool"):
            cls = nn.MaxPool2d if k == "maxpool" else nn.AvgPool2d
            mods.append(cls(a["k"], a["stride"]))
            c, h, w = shape
            shape = (c, (h - a["k"]) // a["stride"] + 1, (w - a["k"]) // a["stride"] + 1)
        elif k == "gap":
            mods.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif k == "dropout":
            mods.append(nn.Dropout(a["p"]))
        elif k == "flatten":
            mods.append(nn.Flatten())
            shape = (math.prod(shape),)
        elif k == "dense":
            mods.append(nn.Linear(shape[0], a["out"], bias=a["bias"]))
            shape = (a["out"],)
        else:  # parse_spec makes no other kinds
            raise AssertionError(k)
    return nn.Sequential(*mods), shape


def build(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> nn.Sequential:
    """The ``nn.Sequential`` of ``spec`` on inputs of shape ``[c, h, w]``.

    Shapes are inferred from the input (conv input channels, dense input features);
    implied flattens and projection shortcuts are inserted as Petal does, so
    ``state_dict`` names and shapes are those of a Petal checkpoint. Like :func:`infer`,
    it also builds a spec that ends in feature maps, which Petal refuses as a network
    (:func:`network` applies those rules). Weights have PyTorch's default initialisation
    (from the global RNG), float32, training mode.
    """
    nodes, _ = infer(spec, input_shape)
    model, _ = _modules(nodes, tuple(int(v) for v in input_shape))
    return model


def param_count(model: nn.Module) -> int:
    """The number of trainable values (parameters; BatchNorm running statistics are
    buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


def load(checkpoint_path, dtype: torch.dtype = torch.float32):
    """Loads a Petal checkpoint (``model.safetensors``).

    Rebuilds the network from the file's ``spec`` and ``input_shape`` metadata with
    :func:`build`, then ``load_state_dict(strict=True)``: every tensor name and shape must
    match (including every ``num_batches_tracked``, which ``strict`` alone would let be
    missing). ``num_batches_tracked`` must be a shape-``[]`` int64 tensor, every other tensor
    floating point. Returns ``(model, metadata)`` with the model in ``dtype`` and in eval
    mode (BatchNorm uses the stored running statistics); ``metadata`` is the header's
    string dict, with ``input_shape``, ``classes``, ``normalization``, ``epoch`` and
    ``step`` decoded from JSON where present.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = str(checkpoint_path)
    with safe_open(path, "pt") as f:
        raw = dict(f.metadata() or {})
    if "spec" not in raw or "input_shape" not in raw:
        raise ValueError(f"{path}: metadata has no `spec` or `input_shape` (not a Petal checkpoint?)")
    meta = dict(raw)
    for key in ("input_shape", "classes", "normalization", "epoch", "step", "format_version"):
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError:
                pass  # leave it as text; only input_shape is needed here
    shape = meta["input_shape"]
    if isinstance(shape, str):
        raise ValueError(f"{path}: metadata input_shape `{shape}` is not a JSON list")
    state = load_file(path)
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            if t.dtype != torch.int64 or t.dim() != 0:
                raise ValueError(f"{path}: tensor {name} is {t.dtype} of shape {list(t.shape)}, "
                                 "expected an int64 scalar (shape [])")
        elif not t.is_floating_point():
            raise ValueError(f"{path}: tensor {name} is {t.dtype}, expected floating point")
    model = build(meta["spec"], shape).to(dtype)
    # strict=True alone lets a missing num_batches_tracked through (BatchNorm fills it in
    # for old checkpoints), so compare the names first.
    want = set(model.state_dict())
    missing, extra = sorted(want - set(state)), sorted(set(state) - want)
    if missing or extra:
        raise ValueError(f"{path}: tensors do not match the spec `{meta['spec']}`: "
                         f"missing {missing}, unexpected {extra}")
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """``petal_torch.py CHECKPOINT``: prints the module, parameter count and metadata.
    ``petal_torch.py --spec SPEC --input-shape C,H,W``: the same for a spec."""
    ap = argparse.ArgumentParser(description="Load a Petal checkpoint (or build a spec) in PyTorch.")
    ap.add_argument("checkpoint", nargs="?", help="a Petal model.safetensors")
    ap.add_argument("--spec", help="build this spec (or preset name) instead of loading a checkpoint")
    ap.add_argument("--input-shape", default="3,32,32", help="C,H,W for --spec (default 3,32,32)")
    ap.add_argument("--classes", type=int, default=5, help="class count for a preset --spec (default 5)")
    args = ap.parse_args(argv)
    try:
        if args.spec:
            shape = [int(v) for v in args.input_shape.split(",")]
            spec = args.spec
            try:
                spec = preset_spec(spec, args.classes)
            except ValueError:
                pass
            model, meta = build(spec, shape).eval(), {"spec": canonical_spec(spec, shape),
                                                      "input_shape": shape}
        elif args.checkpoint:
            model, meta = load(args.checkpoint)
        else:
            ap.error("give a CHECKPOINT or --spec")
    except (SpecError, ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(model)
    n_buf = sum(b.numel() for b in model.buffers())
    print(f"parameters: {param_count(model)} (plus {n_buf} buffer values)")
    for k, v in meta.items():
        print(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
