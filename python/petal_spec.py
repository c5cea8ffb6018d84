#!/usr/bin/env python3
"""Petal's one-line network specs in pure Python (standard library only).

The spec grammar, its parser, formatter and shape inference, and the presets: what
``petal_torch.py`` builds PyTorch modules from, usable without torch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple, Union

__all__ = [
    "SpecError",
    "Layer",
    "Res",
    "parse_spec",
    "format_spec",
    "canonical_spec",
    "infer",
    "preset_spec",
    "MAX_SPEC_NUMBER",
]

#: The largest number a spec may hold (Petal's `MAX_SPEC_NUMBER` guards the same).
MAX_SPEC_NUMBER = 1 << 28


class SpecError(ValueError):
    """A spec that does not parse or does not fit its input.

    ``position`` is the 1-based place of the layer, dotted for layers inside residual
    blocks (``"4.body.2"``); ``layer`` is its text.
    """

    def __init__(self, position: str, layer: str, reason: str):
        self.position, self.layer, self.reason = str(position), layer, reason
        super().__init__(f"spec layer {position} (`{layer}`): {reason}")


@dataclass
class Layer:
    """One plain spec layer.

    ``kind`` is one of ``conv``, ``bn``, ``relu``, ``maxpool``, ``avgpool``, ``gap``,
    ``dropout``, ``flatten``, ``dense``; ``args`` holds its numbers (``out_c``, ``kh``,
    ``kw``, ``stride``, ``pad``, ``bias`` for conv; ``k``, ``stride`` for pools; ``p`` for
    dropout; ``out``, ``bias`` for dense). ``text`` is the token as written.
    """

    kind: str
    args: dict = field(default_factory=dict)
    text: str = ""


@dataclass
class Res:
    """A residual block: ``body`` and ``shortcut`` are lists of nodes (``shortcut`` is
    empty for the identity)."""

    body: List["Node"]
    shortcut: List["Node"] = field(default_factory=list)
    text: str = ""
    kind: str = "res"


Node = Union[Layer, Res]
Shape = Tuple[int, ...]



# ----------------------------------------------------------------------------- parsing


def _split_top(text: str, sep: str, where: str) -> List[str]:
    """Splits ``text`` at ``sep`` outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(where, text.strip(), "`)` without a matching `(`")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise SpecError(where, text.strip(), "`(` without a matching `)`")
    parts.append(text[start:])
    return parts


def _number(text: str, what: str, pos: str, tok: str, zero_ok: bool = False) -> int:
    if not re.fullmatch(r"\d+", text):
        raise SpecError(pos, tok, f"{what} `{text}` is not a whole number")
    n = int(text)
    if n == 0 and not zero_ok:
        raise SpecError(pos, tok, f"{what} must be at least 1")
    if n > MAX_SPEC_NUMBER:
        raise SpecError(pos, tok, f"{what} {n} is larger than the limit {MAX_SPEC_NUMBER}")
    return n


def _parse_list(text: str, prefix: str) -> List[Node]:
    if not text.strip():
        raise SpecError(prefix or "1", "", "the spec is empty" if not prefix else "empty layer list")
    nodes = []
    for i, tok in enumerate(_split_top(text, ",", prefix or "1")):
        pos = f"{prefix}.{i}" if prefix else str(i + 1)
        nodes.append(_parse_layer(tok.strip(), pos))
    return nodes


def _parse_layer(tok: str, pos: str) -> Node:
    if not tok:
        raise SpecError(pos, tok, "empty layer (two commas in a row, or a trailing comma?)")
    m = re.fullmatch(r"res\s*\((.*)\)", tok, re.S)
    if m:
        inner = _split_top(m[1], "|", pos)
        if len(inner) > 2:
            raise SpecError(pos, tok, "a residual block has at most one `|`")
        body = _parse_list(inner[0], f"{pos}.body")
        shortcut = _parse_list(inner[1], f"{pos}.shortcut") if len(inner) == 2 else []
        return Res(body, shortcut, tok)
    if "(" in tok or ")" in tok or "|" in tok:
        raise SpecError(pos, tok, "parentheses and `|` belong to `res(...)` only")
    parts = [p.strip() for p in tok.split("/")]
    head, opts = parts[0], parts[1:]

    def no_opts(name):
        if opts:
            raise SpecError(pos, tok, f"`{name}` takes no options, got `/{opts[0]}`")

    if head.startswith("conv"):
        kernel, sep, out = head[4:].partition(":")
        if not sep:
            raise SpecError(pos, tok, "a conv needs its output channels: `conv3x3:8`")
        if not kernel:
            raise SpecError(pos, tok, "a conv needs its kernel size: `conv3x3:8`")
        if "x" in kernel:
            a, b = kernel.split("x", 1)
            kh, kw = _number(a, "kernel height", pos, tok), _number(b, "kernel width", pos, tok)
        else:
            kh = kw = _number(kernel, "kernel size", pos, tok)
        args = dict(out_c=_number(out, "output channels", pos, tok), kh=kh, kw=kw,
                    stride=1, pad=0, bias=True)
        for o in opts:
            if o == "nobias":
                args["bias"] = False
            elif o.startswith("s"):
                args["stride"] = _number(o[1:], "stride", pos, tok)
            elif o.startswith("p"):
                args["pad"] = _number(o[1:], "padding", pos, tok, zero_ok=True)
            else:
                raise SpecError(pos, tok, f"unknown conv option `/{o}` (expected /sN, /pN or /nobias)")
        return Layer("conv", args, tok)
    for kind in ("maxpool", "avgpool"):
        if head.startswith(kind):
            rest = head[len(kind):]
            if not rest:
                raise SpecError(pos, tok, f"a {kind} needs its window size: `{kind}2`")
            k = _number(rest, "pool size", pos, tok)
            stride = k
            for o in opts:
                if not o.startswith("s"):
                    raise SpecError(pos, tok, f"unknown {kind} option `/{o}` (expected /sN)")
                stride = _number(o[1:], "stride", pos, tok)
            return Layer(kind, dict(k=k, stride=stride), tok)
    if head.startswith("dense:"):
        args = dict(out=_number(head[6:], "outputs", pos, tok), bias=True)
        for o in opts:
            if o != "nobias":
                raise SpecError(pos, tok, f"unknown dense option `/{o}` (expected /nobias)")
            args["bias"] = False
        return Layer("dense", args, tok)
    if head.startswith("dropout:"):
        no_opts("dropout")
        text = head[8:]
        if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", text):
            raise SpecError(pos, tok, f"dropout probability `{text}` is not a decimal number")
        p = float(text)
        if not (0.0 <= p < 1.0):
            raise SpecError(pos, tok, f"dropout probability {text} is not in [0, 1)")
        return Layer("dropout", dict(p=p), tok)
    if head in ("relu", "flatten", "bn", "gap"):
        no_opts(head)
        return Layer(head, {}, tok)
    if head == "dense":
        raise SpecError(pos, tok, "a dense layer needs its outputs: `dense:5`")
    if head == "dropout":
        raise SpecError(pos, tok, "a dropout needs its probability: `dropout:0.5`")
    raise SpecError(pos, tok, f"unknown layer `{head}` (expected convKxK:N, maxpoolK, avgpoolK, "
                              "relu, bn, gap, dropout:P, flatten, dense:N or res(...))")


def parse_spec(spec: str) -> List[Node]:
    """Parses a spec string into a list of nodes (:class:`Layer` or :class:`Res`).

    Top-level commas inside ``res(...)`` do not split layers; ``|`` inside a block
    separates its body from its shortcut. Whitespace around tokens is ignored. Preset
    names are not resolved here (checkpoints store the expanded spec); see
    :func:`preset_spec`. Raises :class:`SpecError` naming the layer and its place.
    """
    return _parse_list(spec, "")


# ----------------------------------------------------------------------------- formatting


def _format_node(n: Node) -> str:
    if isinstance(n, Res):
        body = format_spec(n.body)
        return f"res({body}|{format_spec(n.shortcut)})" if n.shortcut else f"res({body})"
    a = n.args
    if n.kind == "conv":
        s = f"conv{a['kh']}x{a['kw']}:{a['out_c']}"
        s += f"/s{a['stride']}" if a["stride"] != 1 else ""
        s += f"/p{a['pad']}" if a["pad"] != 0 else ""
        return s + ("" if a["bias"] else "/nobias")
    if n.kind in ("maxpool", "avgpool"):
        return f"{n.kind}{a['k']}" + (f"/s{a['stride']}" if a["stride"] != a["k"] else "")
    if n.kind == "dense":
        return f"dense:{a['out']}" + ("" if a["bias"] else "/nobias")
    if n.kind == "dropout":
        return f"dropout:{a['p']!r}"
    return n.kind


def format_spec(nodes: Sequence[Node]) -> str:
    """Writes nodes back as a spec string that :func:`parse_spec` reads to the same nodes
    (``conv3`` becomes ``conv3x3``, default strides and paddings are left out)."""
    return ",".join(_format_node(n) for n in nodes)


# ----------------------------------------------------------------------------- shapes


def _out_size(n: int, k: int, s: int, p: int, pos: str, tok: str, what: str) -> int:
    if n + 2 * p < k:
        raise SpecError(pos, tok, f"does not fit its input: {what}: kernel {k} is larger than "
                                  f"the padded input {n + 2 * p}")
    return (n + 2 * p - k) // s + 1


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _infer_list(nodes: Sequence[Node], shape: Shape, prefix: str) -> Tuple[List[Node], Shape]:
    out: List[Node] = []
    for i, n in enumerate(nodes):
        pos = f"{prefix}.{i}" if prefix else str(i + 1)
        spatial = len(shape) == 3
        if isinstance(n, Layer) and n.kind == "dense" and spatial:
            out.append(Layer("flatten", {}, "flatten"))  # implied, counts as a layer
            shape = (math.prod(shape),)
            spatial = False
        if isinstance(n, Res):
            body, bshape = _infer_list(n.body, shape, f"{pos}.body")
            short, sshape = _infer_list(n.shortcut, shape, f"{pos}.shortcut")
            if bshape != sshape:
                what = "shortcut" if n.shortcut else "identity shortcut"
                raise SpecError(pos, n.text, f"the body gives {_shape_text(bshape)} but the "
                                             f"{what} gives {_shape_text(sshape)}")
            out.append(Res(body, short, n.text))
            shape = bshape
            continue
        a, k = n.args, n.kind
        if k in ("conv", "bn", "maxpool", "avgpool", "gap") and not spatial:
            raise SpecError(pos, n.text, f"needs a [c, h, w] input, got a flat {shape[0]}")
        if k == "conv":
            c, h, w = shape
            shape = (a["out_c"],
                     _out_size(h, a["kh"], a["stride"], a["pad"], pos, n.text, "conv2d"),
                     _out_size(w, a["kw"], a["stride"], a["pad"], pos, n.text, "conv2d"))
        elif k in ("maxpool", "avgpool"):
            c, h, w = shape
            what = "max_pool2d" if k == "maxpool" else "avg_pool2d"
            shape = (c, _out_size(h, a["k"], a["stride"], 0, pos, n.text, what),
                     _out_size(w, a["k"], a["stride"], 0, pos, n.text, what))
        elif k == "gap":
            shape = (shape[0], 1, 1)
        elif k == "flatten":
            shape = (math.prod(shape),)
        elif k == "dense":
            shape = (a["out"],)
        out.append(n)
    return out, shape


def infer(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> Tuple[List[Node], Shape]:
    """Checks a spec against an input shape ``[c, h, w]``.

    Returns the nodes with the implied ``flatten`` layers inserted (before a ``dense``
    that follows spatial layers, in every ``nn.Sequential`` of the tree) and the output
    shape. Raises :class:`SpecError` for a layer that does not fit its input.
    """
    nodes = parse_spec(spec) if isinstance(spec, str) else list(spec)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input shape must be [c, h, w] of positive sizes, got {list(input_shape)}")
    return _infer_list(nodes, shape, "")


def canonical_spec(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> str:
    """The canonical form of ``spec`` on ``input_shape``: implied flattens written out,
    shortcuts explicit unless identity, default options left out (what Petal stores as
    checkpoint ``spec`` metadata, up to the spelling of dropout probabilities)."""
    return format_spec(infer(spec, input_shape)[0])


# ----------------------------------------------------------------------------- presets


def _resnet(classes: int, blocks_per_stage: int) -> str:
    def block(c: int, stride: int) -> str:
        s = f"/s{stride}" if stride != 1 else ""
        body = f"conv3x3:{c}{s}/p1/nobias,bn,relu,conv3x3:{c}/p1/nobias,bn"
        return f"res({body}|conv1x1:{c}{s}/nobias,bn)" if stride != 1 else f"res({body})"

    layers = ["conv3x3:16/p1/nobias,bn,relu"]
    for stage, c in enumerate((16, 32, 64)):
        for b in range(blocks_per_stage):
            layers.append(block(c, 2 if stage > 0 and b == 0 else 1))
            layers.append("relu")
    layers.append(f"gap,flatten,dense:{classes}")
    return ",".join(layers)


def preset_spec(name: str, classes: int = 5) -> str:
    """The spec of a preset for ``classes`` classes: ``seednet``, ``flowernet``,
    ``resnet8`` (one block per stage), ``resnet20`` (three blocks per stage; only the
    first block of stages 2 and 3 has stride 2 and a projection shortcut).

    A copy of the Rust presets for tests and documentation; checkpoints store the
    expanded spec, so :func:`load` never needs it. ``seednet`` and ``flowernet`` are
    given without the implied ``flatten`` (as Petal writes them).
    """
    name = name.strip()
    if name == "seednet":
        return f"conv3x3:8,maxpool2,dense:{classes}"
    if name == "flowernet":
        return ("conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,"
                f"conv3x3:64/p1,relu,maxpool2,dense:{classes}")
    if name == "resnet8":
        return _resnet(classes, 1)
    if name == "resnet20":
        return _resnet(classes, 3)
    raise ValueError(f"unknown preset `{name}` (expected seednet, flowernet, resnet8 or resnet20)")
