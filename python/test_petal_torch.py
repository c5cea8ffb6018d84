#!/usr/bin/env python3
"""Self-test of python/petal_torch.py and tests/torch_interop.py (no Petal build needed).

    python3 python/test_petal_torch.py        (or: python3 -m pytest python/test_petal_torch.py)

Checks parsing, canonical formatting, state_dict names, shape errors, presets, a
checkpoint written the way Petal writes one (f32 tensors, int64 num_batches_tracked,
string metadata) loaded strictly, and tests/torch_interop.py's pass/fail on it in eval and
training mode.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import petal_torch as pt  # noqa: E402

SMALL = ("conv3x3:4/p1/nobias,bn,relu,res(conv3x3:8/s2/p1/nobias,bn,relu,conv3x3:8/p1/nobias,bn"
         "|conv1x1:8/s2/nobias,bn),relu,res(conv3x3:8/p1/nobias,bn,relu,conv3x3:8/p1/nobias,bn),"
         "relu,gap,flatten,dense:3")


def test_names_and_shapes():
    m = pt.build(SMALL, [3, 9, 9])
    sd = m.state_dict()
    assert "3.body.0.weight" in sd and "3.shortcut.1.running_mean" in sd
    assert "5.body.4.num_batches_tracked" in sd and "9.weight" in sd
    assert not any(k.startswith("5.shortcut") for k in sd)
    assert sd["3.body.0.weight"].shape == (8, 4, 3, 3)
    assert sd["3.shortcut.0.weight"].shape == (8, 4, 1, 1)
    assert sd["1.num_batches_tracked"].dtype == torch.int64 and sd["1.num_batches_tracked"].dim() == 0
    assert sd["9.weight"].shape == (3, 8)
    assert m(torch.randn(2, 3, 9, 9)).shape == (2, 3)
    # the stride-2 body on 9x9 with pad 1 gives 5x5, as the 1x1 stride-2 shortcut does
    assert pt.infer("conv3x3:8/s2/p1", [3, 9, 9])[1] == (8, 5, 5)
    assert pt.infer("conv1x1:8/s2", [3, 9, 9])[1] == (8, 5, 5)


def test_canonical():
    assert pt.canonical_spec(SMALL, [3, 9, 9]) == SMALL
    assert pt.canonical_spec("conv3:8 / p1 , bn,gap, dense:2", [1, 4, 4]) == \
        "conv3x3:8/p1,bn,gap,flatten,dense:2"
    assert pt.canonical_spec("maxpool2/s2,avgpool3/s1,dropout:0.5,res(relu)", [1, 8, 8]) == \
        "maxpool2,avgpool3/s1,dropout:0.5,res(relu)"
    # a block without `|` whose body changes the shape gets Petal's projection shortcut
    assert pt.canonical_spec("conv3x3:8,res(conv3x3:4/p1)", [3, 9, 9]) == \
        "conv3x3:8,res(conv3x3:4/p1|conv1x1:4/nobias,bn)"
    assert "1.shortcut.1.running_var" in pt.build("conv3x3:8,res(conv3x3:4/p1)", [3, 9, 9]).state_dict()
    nested = "res(res(conv3x3:2/p1,bn),relu|conv1x1:2)"
    assert pt.canonical_spec(nested, [2, 4, 4]) == nested
    assert "0.body.0.body.1.running_var" in pt.build(nested, [2, 4, 4]).state_dict()
    for name in ("resnet8", "resnet20", "seednet", "flowernet"):
        spec = pt.preset_spec(name, 10)
        shape = [1, 50, 50] if name == "seednet" else [3, 32, 32]
        canon = pt.canonical_spec(spec, shape)
        assert pt.canonical_spec(canon, shape) == canon
    assert pt.param_count(pt.build(pt.preset_spec("resnet8", 10), [3, 32, 32])) == 78042
    assert pt.param_count(pt.build(pt.preset_spec("resnet20", 10), [3, 32, 32])) == 272474


def test_errors():
    bad = {
        "conv3x3:8,,relu": "empty layer",
        "res(conv3x3:8": "without a matching",
        "conv3x3:8,res(conv3x3:4)": "projection",
        "res(conv3x3:4/p1|conv1x1:4/s2)": "shortcut gives",
        "dropout:1.5": "not in [0, 1)",
        "relu,dense:3,bn": "needs a [c, h, w] input",
        "maxpool20": "larger than",
        "bn/x": "takes no options",
        "res(relu|relu|relu)": "at most one",
    }
    for spec, words in bad.items():
        try:
            pt.build(spec, [3, 9, 9])
        except pt.SpecError as e:
            assert words in str(e), (spec, str(e))
        else:
            raise AssertionError(f"{spec} built")


def test_corpus_state_dicts():
    """Every network of python/spec_corpus.json (written by petal-model) builds in PyTorch
    with petal-model's parameter and buffer names and shapes, and runs."""
    cases = json.loads((HERE / "spec_corpus.json").read_text(encoding="utf-8"))["cases"]
    built = 0
    for case in cases:
        if "ok" not in case:
            continue
        want, shape = case["ok"], case["input"]
        m = pt.build(case["spec"], shape)
        params = [[k, list(v.shape)] for k, v in m.named_parameters()]
        buffers = [[k, list(v.shape)] for k, v in m.named_buffers()]
        assert (params, buffers) == (want["params"], want["buffers"]), case["spec"]
        assert pt.param_count(m) == want["param_count"], case["spec"]
        with torch.no_grad():
            assert m.eval()(torch.zeros(1, *shape)).shape == (1, want["classes"]), case["spec"]
        built += 1
    assert built >= 50, built


def _write_checkpoint(d: Path, spec, shape, batch=4, perturb=0.0, train=True):
    """A checkpoint as Petal writes it and a petal_outputs.json from PyTorch itself."""
    torch.manual_seed(0)
    m = pt.build(spec, shape)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(3)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    meta = {"format": "petal-checkpoint", "format_version": "1", "spec": spec,
            "input_shape": json.dumps(shape), "classes": json.dumps(["a", "b", "c"]),
            "normalization": json.dumps({"scale": 1 / 255, "mean": [0.0] * shape[0], "std": [1.0] * shape[0]}),
            "epoch": "0", "step": "3"}
    save_file(sd, str(d / "model.safetensors"), metadata=meta)
    x = torch.rand(batch, *shape)
    m64 = pt.build(spec, shape).double()
    m64.load_state_dict(sd)
    with torch.no_grad():
        probs = torch.softmax(m64.eval()(x.double()), 1)
        out = {"spec": spec, "input_shape": shape, "batch": batch, "input": x.reshape(-1).tolist(),
               "probs": (probs.reshape(-1) + perturb).tolist()}
        if train:
            out["train_probs"] = torch.softmax(m64.train()(x.double()), 1).reshape(-1).tolist()
    (d / "petal_outputs.json").write_text(json.dumps(out))
    return sd


def test_load_and_interop():
    interop = HERE.parent / "tests" / "torch_interop.py"
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        sd = _write_checkpoint(d, SMALL, [3, 9, 9])
        model, meta = pt.load(d / "model.safetensors")
        assert not model.training and meta["input_shape"] == [3, 9, 9] and meta["step"] == 3
        assert int(model[1].num_batches_tracked) == 3
        assert torch.equal(model.state_dict()["3.shortcut.1.running_var"], sd["3.shortcut.1.running_var"])
        r = subprocess.run([sys.executable, str(interop), t], capture_output=True, text=True)
        assert r.returncode == 0 and "train mode" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([sys.executable, str(HERE / "petal_torch.py"), str(d / "model.safetensors")],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "parameters: 2271" in r.stdout, r.stdout + r.stderr
        _write_checkpoint(d, SMALL, [3, 9, 9], perturb=3e-4)
        r = subprocess.run([sys.executable, str(interop), t], capture_output=True, text=True)
        assert r.returncode == 1, r.stdout + r.stderr
        # a float num_batches_tracked is refused by name
        sd["1.num_batches_tracked"] = torch.tensor(3.0)
        save_file(sd, str(d / "model.safetensors"), metadata={"spec": SMALL, "input_shape": "[3,9,9]"})
        try:
            pt.load(d / "model.safetensors")
        except ValueError as e:
            assert "1.num_batches_tracked" in str(e)
        else:
            raise AssertionError("float num_batches_tracked loaded")
        # a missing num_batches_tracked is refused (load_state_dict(strict=True) alone would
        # fill it in)
        del sd["1.num_batches_tracked"]
        save_file(sd, str(d / "model.safetensors"), metadata={"spec": SMALL, "input_shape": "[3,9,9]"})
        try:
            pt.load(d / "model.safetensors")
        except ValueError as e:
            assert "1.num_batches_tracked" in str(e)
        else:
            raise AssertionError("missing tensor loaded")


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print(f"{name}: ok")
