#!/usr/bin/env python3
"""Petal's one-line network specs in pure Python (standard library only).

The Python copy of Petal's spec grammar (``crates/model/src/spec``) and of what Petal
builds from a spec on an input (``crates/model/src/plan/build.rs``), without torch:

- :func:`parse_spec` reads a spec string (or a preset name, for 5 classes, as Petal does)
  into a tree of :class:`Layer` and :class:`Res` nodes;
- :func:`format_spec` writes nodes back (``conv3`` as ``conv3x3``, default options left
  out, dropout probabilities in millionths as Petal keeps them);
- :func:`infer` checks every layer against its input shape ``[c, h, w]`` and returns the
  nodes as Petal builds them: a ``flatten`` implied before a ``dense`` that follows
  spatial layers, and the projection shortcut ``conv1x1:C/sS/nobias,bn`` of a residual
  block without ``|`` whose body changes the shape; :func:`canonical_spec` writes those
  out (the ``spec`` metadata of a Petal checkpoint);
- :func:`network` does what :func:`infer` does and applies Petal's rules for a whole
  network (it ends in logits, and computes something); it gives every layer's output
  shape and the ``state_dict`` names and shapes (parameters, then batch-norm buffers) of
  the equivalent PyTorch ``nn.Sequential`` (``3.body.0.weight``,
  ``5.shortcut.1.running_var``);
- :func:`preset_spec`, :func:`resolve_arch`, :data:`PRESETS`: the presets.

Errors are :class:`SpecError` with Petal's position (the 1-based top-level layer) and
layer text. Petal's size limits (``crates/model/src/limits.rs``: parameters, activations,
convolution scratch) are not checked here.

Rust is the reference: ``crates/model/tests/spec_corpus.rs`` writes what petal-model makes
of a table of specs to ``python/spec_corpus.json``, and ``python/test_petal_spec.py``
checks that this module agrees on every case.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    "SpecError",
    "Layer",
    "Res",
    "NetworkInfo",
    "parse_spec",
    "format_spec",
    "canonical_spec",
    "infer",
    "network",
    "shape_text",
    "preset_spec",
    "resolve_arch",
    "PRESETS",
    "MAX_SPEC_NUMBER",
    "MAX_DEPTH",
    "DROPOUT_SCALE",
]

#: The largest number a spec may hold (Petal's `MAX_SPEC_NUMBER`).
MAX_SPEC_NUMBER = 1 << 20
#: The deepest nesting of residual blocks a spec may hold.
MAX_DEPTH = 8
#: Dropout probabilities are kept in millionths (`dropout:0.5` is 500,000).
DROPOUT_SCALE = 1_000_000
#: The preset names, in the order Petal's help lists them.
PRESETS = ("seednet", "flowernet", "resnet8", "resnet20")
#: What Rust's `str::trim` strips (Unicode White_Space; Python's `str.strip()` also strips
#: U+001C..U+001F, which Petal keeps).
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
      "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
#: What Rust's `usize` and `f64` parsers accept (ASCII digits only).
_WHOLE = re.compile(r"\+?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)",
                    re.IGNORECASE | re.ASCII)
_USIZE_MAX = (1 << 64) - 1


class SpecError(ValueError):
    """A spec that does not parse or does not fit its input.

    ``position`` is the 1-based place of the top-level layer (an error inside a residual
    block gives the block's place). ``layer`` is, for a spec that does not parse, the
    top-level layer as written (the whole spec for unbalanced parentheses); for a layer
    that does not fit its input, the layer at fault in canonical form (an inner layer of a
    block, or the block itself when its body and shortcut disagree). Both are Petal's.
    """

    def __init__(self, position: int, layer: str, reason: str):
        self.position, self.layer, self.reason = int(position), layer, reason
        super().__init__(f"spec layer {position} (`{layer}`): {reason}")


@dataclass
class Layer:
    """One plain spec layer.

    ``kind`` is one of ``conv``, ``bn``, ``relu``, ``maxpool``, ``avgpool``, ``gap``,
    ``dropout``, ``flatten``, ``dense``; ``args`` holds its numbers (``out_c``, ``kh``,
    ``kw``, ``stride``, ``pad``, ``bias`` for conv; ``k``, ``stride`` for pools; ``p`` for
    dropout, a multiple of 1e-6; ``out``, ``bias`` for dense). ``text`` is the token as
    written.
    """

    kind: str
    args: dict = field(default_factory=dict)
    text: str = ""


@dataclass
class Res:
    """A residual block: ``body`` and ``shortcut`` are lists of nodes (``shortcut`` is
    empty for the identity, or, before :func:`infer`, for an implied projection)."""

    body: List["Node"]
    shortcut: List["Node"] = field(default_factory=list)
    text: str = ""
    kind: str = "res"


Node = Union[Layer, Res]
Shape = Tuple[int, ...]


# ----------------------------------------------------------------------------- parsing


class _Bad(Exception):
    """A reason a layer does not parse; :func:`parse_spec` adds the position."""


def _trim(text: str) -> str:
    return text.strip(_WS)


def _split_top(text: str, sep: str) -> List[str]:
    """Splits ``text`` at ``sep`` outside parentheses. An unbalanced parenthesis raises
    ``_Bad(reason, piece)``, ``piece`` the 1-based index of the piece holding it."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _Bad("`)` without a matching `(`", len(parts) + 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise _Bad("`(` without a matching `)`", len(parts) + 1)
    parts.append(text[start:])
    return parts


def _number(text: str, what: str) -> int:
    """A whole number in ``1 ..= MAX_SPEC_NUMBER``, as Rust's ``usize`` parser reads it."""
    t = _trim(text)
    if not _WHOLE.fullmatch(t) or int(t) > _USIZE_MAX:
        raise _Bad(f"{what} `{text}` is not a whole number")
    n = int(t)
    if n == 0:
        raise _Bad(f"{what} must be at least 1")
    if n > MAX_SPEC_NUMBER:
        raise _Bad(f"{what} {n} is larger than the limit {MAX_SPEC_NUMBER}")
    return n


def _millionths(p: float) -> int:
    """``p`` in ``[0, 1)`` in millionths, rounded half away from zero (Rust's ``round``)
    and kept below 1."""
    x = p * DROPOUT_SCALE
    n = math.floor(x)
    if x - n >= 0.5:
        n += 1
    return min(n, DROPOUT_SCALE - 1)


def _dropout(text: str) -> float:
    t = _trim(text)
    if not _FLOAT.fullmatch(t):
        raise _Bad(f"dropout probability `{text}` is not a number")
    p = float(t)
    if not 0.0 <= p < 1.0:
        raise _Bad(f"dropout probability {text} is not in [0, 1)")
    return _millionths(p) / DROPOUT_SCALE


def _no_opts(name: str, opts: List[str]) -> None:
    if opts:
        raise _Bad(f"`{name}` takes no options, got `/{opts[0]}`")


def _parse_list(text: str, depth: int, what: str) -> List[Node]:
    """The layers of a block's body or shortcut (``what``)."""
    if not _trim(text):
        raise _Bad(f"the block's {what} is empty")
    nodes = []
    for i, tok in enumerate(_split_top(text, ",")):
        tok = _trim(tok)
        try:
            nodes.append(_parse_layer(tok, depth))
        except _Bad as e:
            raise _Bad(f"{what} layer {i + 1} `{tok}`: {e.args[0]}") from None
    return nodes


def _parse_residual(inner: str, depth: int, tok: str) -> Res:
    if not (inner.startswith("(") and inner[1:].endswith(")")):
        raise _Bad("a residual block is `res(layers)` or `res(layers|shortcut layers)`")
    if depth + 1 > MAX_DEPTH:
        raise _Bad(f"residual blocks nest deeper than {MAX_DEPTH}")
    halves = _split_top(inner[1:-1], "|")
    if len(halves) > 2:
        raise _Bad("a residual block has at most one `|`")
    body = _parse_list(halves[0], depth + 1, "body")
    shortcut = _parse_list(halves[1], depth + 1, "shortcut") if len(halves) == 2 else []
    return Res(body, shortcut, tok)


def _parse_conv(rest: str, opts: List[str], tok: str) -> Layer:
    kernel, sep, out = rest.partition(":")
    if not sep:
        raise _Bad("a conv needs its output channels: `conv3x3:8`")
    if "x" in kernel:
        a, _, b = kernel.partition("x")
        kh, kw = _number(a, "kernel height"), _number(b, "kernel width")
    elif not kernel:
        raise _Bad("a conv needs its kernel size: `conv3x3:8`")
    else:
        kh = kw = _number(kernel, "kernel size")
    args = dict(out_c=_number(out, "output channels"), kh=kh, kw=kw, stride=1, pad=0, bias=True)
    for o in opts:
        if o.startswith("s"):
            args["stride"] = _number(o[1:], "stride")
        elif o == "nobias":
            args["bias"] = False
        elif o.startswith("p"):
            args["pad"] = 0 if o[1:] == "0" else _number(o[1:], "padding")
        else:
            raise _Bad(f"unknown conv option `/{o}` (expected /sN, /pN or /nobias)")
    return Layer("conv", args, tok)


def _parse_layer(tok: str, depth: int) -> Node:
    if not tok:
        raise _Bad("empty layer (two commas in a row, or a trailing comma?)")
    if tok.startswith("res"):
        return _parse_residual(_trim(tok[3:]), depth, tok)
    parts = [_trim(p) for p in tok.split("/")]
    head, opts = parts[0], parts[1:]
    if head.startswith("conv"):
        return _parse_conv(head[4:], opts, tok)
    for kind in ("maxpool", "avgpool"):
        if head.startswith(kind):
            rest = head[len(kind):]
            if not rest:
                raise _Bad(f"a pool needs its window size: `{kind}2`")
            k = _number(rest, "pool size")
            stride = k
            for o in opts:
                if not o.startswith("s"):
                    raise _Bad(f"unknown {kind} option `/{o}` (expected /sN)")
                stride = _number(o[1:], "stride")
            return Layer(kind, dict(k=k, stride=stride), tok)
    if head.startswith("dense:"):
        args = dict(out=_number(head[6:], "outputs"), bias=True)
        for o in opts:
            if o != "nobias":
                raise _Bad(f"unknown dense option `/{o}` (expected /nobias)")
            args["bias"] = False
        return Layer("dense", args, tok)
    if head.startswith("dropout:"):
        _no_opts("dropout", opts)
        return Layer("dropout", dict(p=_dropout(head[8:])), tok)
    if head in ("relu", "bn", "gap", "flatten"):
        _no_opts(head, opts)
        return Layer(head, {}, tok)
    if head == "dense":
        raise _Bad("a dense layer needs its outputs: `dense:5`")
    if head == "dropout":
        raise _Bad("a dropout needs its probability: `dropout:0.5`")
    raise _Bad(f"unknown layer `{head}` (expected convKxK:N, maxpoolK, avgpoolK, relu, bn, gap, "
               "dropout:P, flatten, dense:N or res(...))")


def parse_spec(spec: str) -> List[Node]:
    """Parses a spec string into a list of nodes (:class:`Layer` or :class:`Res`).

    A preset name (surrounding whitespace ignored) reads as its 5-class spec. Commas
    inside ``res(...)`` do not split layers; ``|`` inside a block separates its body from
    its shortcut. Whitespace around tokens and numbers is ignored. Raises
    :class:`SpecError` naming the top-level layer and its place.
    """
    name = _trim(spec)
    if name in PRESETS:
        spec = preset_spec(name, 5)
    if not _trim(spec):
        raise SpecError(1, "", "the spec is empty")
    try:
        tokens = _split_top(spec, ",")
    except _Bad as e:
        raise SpecError(e.args[1], _trim(spec), e.args[0]) from None
    nodes = []
    for i, tok in enumerate(tokens):
        tok = _trim(tok)
        try:
            nodes.append(_parse_layer(tok, 0))
        except _Bad as e:
            raise SpecError(i + 1, tok, e.args[0]) from None
    return nodes


# ----------------------------------------------------------------------------- formatting


def _dropout_text(p: float) -> str:
    """``p`` as Petal writes it: millionths in shortest decimal form (``0``, ``0.5``,
    ``0.000001``)."""
    n = _millionths(p)
    return "0" if n == 0 else ("0." + f"{n:06d}").rstrip("0")


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
        return f"dropout:{_dropout_text(a['p'])}"
    return n.kind


def format_spec(nodes: Sequence[Node]) -> str:
    """Writes nodes back as a spec string that :func:`parse_spec` reads to the same nodes
    (``conv3`` becomes ``conv3x3``, default strides and paddings are left out)."""
    return ",".join(_format_node(n) for n in nodes)


# ----------------------------------------------------------------------------- shapes


def shape_text(shape: Shape) -> str:
    """A shape as Petal writes it: ``CxHxW`` or ``N``."""
    return "x".join(map(str, shape))


def _strides(n: int, out: int) -> Tuple[int, float]:
    """The strides S with ``(n - 1) // S + 1 == out``: an interval ``[lo, hi]``."""
    if out == 1:
        return n, math.inf
    return (n - 1) // out + 1, (n - 1) // (out - 1)


def _projection(src: Shape, dst: Shape) -> Optional[List[Node]]:
    """The shortcut ``conv1x1:C/sS/nobias,bn`` from ``src`` to ``dst`` feature maps, with
    the smallest stride S that maps both sizes (``(h - 1) // S + 1 == h'``, the same for
    w), as Petal picks it; ``None`` when there is none."""
    if len(src) != 3 or len(dst) != 3:
        return None
    (_, h, w), (c, oh, ow) = src, dst
    (lo_h, hi_h), (lo_w, hi_w) = _strides(h, oh), _strides(w, ow)
    s = max(lo_h, lo_w, 1)
    if s > min(hi_h, hi_w, max(h, w)):
        return None
    conv = Layer("conv", dict(out_c=c, kh=1, kw=1, stride=s, pad=0, bias=False))
    conv.text = _format_node(conv)
    return [conv, Layer("bn", {}, "bn")]


class _Builder:
    """Builds nodes the way ``crates/model/src/plan/build.rs`` does, recording every
    layer's output shape (execution order: a block's body, its shortcut, its add) and the
    ``state_dict`` tensors."""

    def __init__(self):
        self.shapes: List[Shape] = []
        self.params: List[Tuple[str, Shape]] = []
        self.buffers: List[Tuple[str, Shape]] = []
        self.state: List[Tuple[str, Shape]] = []

    def add_list(self, nodes: Sequence[Node], shape: Shape, prefix: str,
                 position: Optional[int]) -> Tuple[List[Node], Shape]:
        expanded: List[Node] = []
        for i, n in enumerate(nodes):
            pos = position if position is not None else i + 1
            todo = [n]
            if isinstance(n, Layer) and n.kind == "dense" and len(shape) == 3:
                todo.insert(0, Layer("flatten", {}, "flatten"))  # implied, counts as a layer
            for m in todo:
                name = f"{prefix}{len(expanded)}"
                if isinstance(m, Res):
                    m, shape = self.add_residual(m, shape, name, pos)
                else:
                    shape = self.add_layer(m, shape, name, pos)
                expanded.append(m)
        return expanded, shape

    def add_residual(self, n: Res, shape: Shape, name: str, pos: int) -> Tuple[Res, Shape]:
        def err(reason):
            return SpecError(pos, _format_node(Res(n.body, n.shortcut)), reason)

        body, body_shape = self.add_list(n.body, shape, f"{name}.body.", pos)
        shortcut = n.shortcut
        if not shortcut and body_shape != shape:
            shortcut = _projection(shape, body_shape)
            if shortcut is None:
                raise err(f"the body turns {shape_text(shape)} into {shape_text(body_shape)}, which "
                          "no 1x1 projection shortcut matches: give the shortcut after `|`")
        short, short_shape = [], shape
        if shortcut:
            short, short_shape = self.add_list(shortcut, shape, f"{name}.shortcut.", pos)
        if short_shape != body_shape:
            raise err(f"the body gives {shape_text(body_shape)} but the shortcut gives "
                      f"{shape_text(short_shape)}: they must agree to be added")
        if all(isinstance(m, Layer) and m.kind == "flatten" for m in body):
            raise err("the body must compute something (not only a flatten)")
        self.shapes.append(body_shape)  # the add
        return Res(body, short, n.text), body_shape

    def add_layer(self, n: Layer, shape: Shape, name: str, pos: int) -> Shape:
        a, k = n.args, n.kind

        def err(reason):
            return SpecError(pos, _format_node(n), reason)

        def tensor(suffix, dims, buffer=False):
            (self.buffers if buffer else self.params).append((f"{name}.{suffix}", dims))
            self.state.append((f"{name}.{suffix}", dims))

        if k in ("conv", "bn", "maxpool", "avgpool", "gap") and len(shape) != 3:
            raise err(f"needs a [c, h, w] input, got a flat {shape[0]} (after a flatten or dense layer)")
        if k == "conv":
            c, h, w = shape
            hp, wp = h + 2 * a["pad"], w + 2 * a["pad"]
            if hp < a["kh"] or wp < a["kw"]:
                raise err(f"does not fit its {shape_text(shape)} input: kernel {a['kh']}x{a['kw']} "
                          f"is larger than the padded input {hp}x{wp}")
            tensor("weight", (a["out_c"], c, a["kh"], a["kw"]))
            if a["bias"]:
                tensor("bias", (a["out_c"],))
            shape = (a["out_c"], (hp - a["kh"]) // a["stride"] + 1, (wp - a["kw"]) // a["stride"] + 1)
        elif k in ("maxpool", "avgpool"):
            c, h, w = shape
            if a["k"] > h or a["k"] > w:
                raise err(f"does not fit its {shape_text(shape)} input: kernel {a['k']} is larger "
                          "than the input")
            shape = (c, (h - a["k"]) // a["stride"] + 1, (w - a["k"]) // a["stride"] + 1)
        elif k == "bn":
            c = shape[0]
            tensor("weight", (c,))
            tensor("bias", (c,))
            for buf, dims in (("running_mean", (c,)), ("running_var", (c,)), ("num_batches_tracked", ())):
                tensor(buf, dims, buffer=True)
        elif k == "gap":
            shape = (shape[0], 1, 1)
        elif k == "flatten":
            shape = (math.prod(shape),)
        elif k == "dense":
            tensor("weight", (a["out"], shape[0]))
            if a["bias"]:
                tensor("bias", (a["out"],))
            shape = (a["out"],)
        elif k not in ("relu", "dropout"):  # parse_spec makes no other kinds
            raise AssertionError(k)
        self.shapes.append(shape)
        return shape


def _input(input_shape: Sequence[int]) -> Shape:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input shape must be [c, h, w] of positive sizes, got {list(input_shape)}")
    return shape


def infer(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> Tuple[List[Node], Shape]:
    """Checks every layer of a spec (or of a partial one) against an input shape
    ``[c, h, w]``.

    Returns the nodes as Petal builds them (the implied ``flatten`` layers and projection
    shortcuts inserted, in every list of the tree) and the output shape. Raises
    :class:`SpecError` for a layer that does not fit its input. Unlike :func:`network`,
    the spec may end in feature maps.
    """
    nodes = parse_spec(spec) if isinstance(spec, str) else list(spec)
    return _Builder().add_list(nodes, _input(input_shape), "", None)


def canonical_spec(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> str:
    """The canonical form of ``spec`` on ``input_shape``: implied flattens and projection
    shortcuts written out, default options left out (what Petal stores as checkpoint
    ``spec`` metadata)."""
    return format_spec(infer(spec, input_shape)[0])


@dataclass
class NetworkInfo:
    """What Petal builds from a spec on an input (:func:`network`)."""

    #: The top-level nodes as built (implied flattens and projection shortcuts included).
    nodes: List[Node]
    #: The canonical spec (:func:`canonical_spec`).
    canonical: str
    #: Every layer's output shape per sample, in execution order: a residual block's body
    #: layers, then its shortcut's, then its add (one shape each).
    shapes: List[Shape]
    #: Trainable tensors, ``(state_dict name, shape)``, in layer order (weight, then bias).
    params: List[Tuple[str, Shape]]
    #: Batch-norm buffers: ``running_mean``, ``running_var`` (``[c]``) and
    #: ``num_batches_tracked`` (``[]``, int64) of each batch norm.
    buffers: List[Tuple[str, Shape]]
    #: Every tensor of the ``state_dict`` (of a checkpoint), in PyTorch's order.
    state: List[Tuple[str, Shape]]

    @property
    def param_count(self) -> int:
        return sum(math.prod(dims) for _, dims in self.params)

    @property
    def classes(self) -> int:
        """The number of outputs (the logits)."""
        return math.prod(self.shapes[-1])


def network(spec: Union[str, Sequence[Node]], input_shape: Sequence[int]) -> NetworkInfo:
    """What Petal builds from ``spec`` on inputs of shape ``[c, h, w]``: :func:`infer`'s
    checks, then Petal's rules for a whole network: it must end in a flat vector (the
    logits) and have a layer that is not a ``flatten``. Raises :class:`SpecError` as Petal
    does (the same position and layer text)."""
    nodes = parse_spec(spec) if isinstance(spec, str) else list(spec)
    b = _Builder()
    expanded, shape = b.add_list(nodes, _input(input_shape), "", None)
    last = _format_node(nodes[-1]) if nodes else ""
    if len(shape) == 3:
        raise SpecError(len(nodes), last, f"the network must end in logits (a dense layer), but "
                                          f"outputs {shape_text(shape)} feature maps")
    if all(isinstance(m, Layer) and m.kind == "flatten" for m in expanded):
        raise SpecError(max(len(nodes), 1), last, "the network needs at least one layer that "
                                                  "computes (conv, pool, relu, bn, dense...)")
    return NetworkInfo(expanded, format_spec(expanded), b.shapes, b.params, b.buffers, b.state)


# ----------------------------------------------------------------------------- presets


def _resnet_body(blocks: int) -> str:
    """The CIFAR ResNet with ``blocks`` basic blocks per stage, up to its ``gap``."""
    layers = ["conv3x3:16/p1/nobias,bn,relu"]
    for stage, c in enumerate((16, 32, 64)):
        for b in range(blocks):
            down = stage > 0 and b == 0
            s = "/s2" if down else ""
            body = f"conv3x3:{c}{s}/p1/nobias,bn,relu,conv3x3:{c}/p1/nobias,bn"
            layers.append((f"res({body}|conv1x1:{c}/s2/nobias,bn)" if down else f"res({body})") + ",relu")
    layers.append("gap")
    return ",".join(layers)


def _preset_body(name: str) -> Optional[str]:
    """A preset's layers before its classifier, ``None`` for another name."""
    if name == "seednet":
        return "conv3x3:8,maxpool2"
    if name == "flowernet":
        return "conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2"
    if name in ("resnet8", "resnet20"):
        return _resnet_body(1 if name == "resnet8" else 3)
    return None


def preset_spec(name: str, classes: int = 5) -> str:
    """The spec of a preset for ``classes`` classes, as Petal writes it (its layers, then
    ``dense:classes``, no implied ``flatten``): ``seednet``, ``flowernet``, ``resnet8``
    (one basic block per stage), ``resnet20`` (three blocks per stage; only the first
    block of stages 2 and 3 has stride 2 and a projection shortcut). Raises
    ``ValueError`` for another name.
    """
    body = _preset_body(_trim(name))
    if body is None:
        raise ValueError(f"unknown preset `{name}` (expected seednet, flowernet, resnet8 or resnet20)")
    return f"{body},dense:{classes}"


def resolve_arch(arch: str, classes: int) -> str:
    """``arch`` as a spec for ``classes`` classes: a preset's spec, any other text as it is."""
    try:
        return preset_spec(arch, classes)
    except ValueError:
        return arch
