#!/usr/bin/env python3
"""Holds python/petal_spec.py to Petal's Rust spec parser and shape inference.

    python3 python/test_petal_spec.py        (standard library only: no torch, no pytest)

``python/spec_corpus.json`` records what petal-model makes of a table of specs, each on an
input shape (``crates/model/tests/spec_corpus.rs`` writes it, and fails when it is stale):
the canonical spec, every layer's output shape, the parameter and batch-norm buffer names
and shapes, the parameter count and class count, or the error (parse or build, its 1-based
position and the layer text). This runs ``petal_spec`` on every case and prints each
disagreement; the exit status is 1 if there is any. It also checks that each canonical
spec reads back to itself and the same network, and that presets are spelled as in Rust.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import petal_spec as ps  # noqa: E402

CORPUS = HERE / "spec_corpus.json"


def outcome(spec, shape):
    """What petal_spec makes of ``spec`` on ``shape``, in the corpus's terms."""
    try:
        nodes = ps.parse_spec(spec)
    except ps.SpecError as e:
        return {"error": {"kind": "parse", "position": e.position, "layer": e.layer}}
    try:
        net = ps.network(nodes, shape)
    except ps.SpecError as e:
        return {"error": {"kind": "build", "position": e.position, "layer": e.layer}}
    return {"ok": {
        "canonical": net.canonical,
        "shapes": [ps.shape_text(s) for s in net.shapes],
        "params": [[name, list(dims)] for name, dims in net.params],
        "buffers": [[name, list(dims)] for name, dims in net.buffers],
        "param_count": net.param_count,
        "classes": net.classes,
    }}


def differences(want, got):
    """``(field, petal-model's, petal_spec's)`` for each field that differs."""
    if set(want) != set(got):
        return [("outcome", want, got)]
    (kind,) = want
    w, g = want[kind], got[kind]
    return [(f"{kind}.{k}", w[k], g.get(k)) for k in w if w[k] != g.get(k)]


def check_case(case):
    """The disagreements of one corpus case, as lines of text."""
    spec, shape = case["spec"], case["input"]
    want = {k: case[k] for k in ("ok", "error") if k in case}
    out = []
    preset = case.get("preset")
    if preset and ps.preset_spec(preset["name"], preset["classes"]) != spec:
        out.append(("preset_spec", spec, ps.preset_spec(preset["name"], preset["classes"])))
    try:
        got = outcome(spec, shape)
    except Exception as e:  # anything but a SpecError is a bug of petal_spec
        got = {"exception": f"{type(e).__name__}: {e}"}
    out += differences(want, got)
    if "ok" in want and "ok" in got and not out:
        # The canonical spec reads back to itself and builds the same network.
        canonical = want["ok"]["canonical"]
        again = outcome(canonical, shape)
        if again != want:
            out.append(("canonical spec rebuilt", want, again))
        formatted = ps.format_spec(ps.parse_spec(canonical))
        if formatted != canonical:
            out.append(("format_spec(parse_spec(canonical))", canonical, formatted))
    return out


def cut(v, n=400):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + "..."


def main():
    cases = json.loads(CORPUS.read_text(encoding="utf-8"))["cases"]
    counts = {}
    failed = 0
    for i, case in enumerate(cases):
        kind = "built" if "ok" in case else case["error"]["kind"] + " error"
        counts[kind] = counts.get(kind, 0) + 1
        problems = check_case(case)
        if problems:
            failed += 1
            shape = "x".join(map(str, case["input"]))
            print(f"case {i}: {json.dumps(case['spec'], ensure_ascii=False)} on {shape}")
            for field, want, got in problems:
                print(f"  {field}:\n    petal-model: {cut(want)}\n    petal_spec:  {cut(got)}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    if failed:
        print(f"FAILED: petal_spec disagrees with petal-model on {failed} of {len(cases)} "
              f"corpus cases ({summary})")
        return 1
    if len(cases) < 100:
        print(f"FAILED: only {len(cases)} corpus cases in {CORPUS}")
        return 1
    print(f"ok: petal_spec agrees with petal-model on all {len(cases)} corpus cases ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
