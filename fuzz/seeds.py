#!/usr/bin/env python3
"""Writes the named seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed-*).

Needs Pillow for the images (`pip install pillow`). The corpora hold these seeds plus
what fuzzing found, minimised with `cargo fuzz cmin`.
"""
import io
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta):
    header, data, off = {}, b"", 0
    for name, (shape, vals) in tensors.items():
        b = struct.pack("<%df" % len(vals), *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def meta(spec, shape, classes, extra=None):
    c = shape[0]
    m = {
        "format": "petal-checkpoint",
        "format_version": "1",
        "spec": spec,
        "input_shape": json.dumps(shape),
        "classes": json.dumps(classes),
        "normalization": json.dumps({"scale": 1 / 255, "mean": [0.0] * c, "std": [1.0] * c}),
        "epoch": "1",
        "step": "3",
    }
    m.update(extra or {})
    return m


def checkpoints():
    out("checkpoint", "dense", safetensors(
        {"1.weight": ([2, 4], [0.1 * i for i in range(8)]), "1.bias": ([2], [0.0, 0.5])},
        meta("flatten,dense:2", [1, 2, 2], ["a", "b"])))
    out("checkpoint", "conv", safetensors(
        {"0.weight": ([2, 1, 2, 2], [0.1 * i for i in range(8)]), "0.bias": ([2], [0.0, 0.5]),
         "4.weight": ([3, 2], [0.1 * i for i in range(6)])},
        meta("conv2x2:2,relu,maxpool2,flatten,dense:3/nobias", [1, 3, 3], ["a", "b", "c"])))
    out("checkpoint", "rgb", safetensors(
        {"0.weight": ([1, 3, 1, 1], [1, 2, 3]), "2.weight": ([2, 1], [1, -1]), "2.bias": ([2], [0, 0])},
        meta("conv1x1:1/nobias,flatten,dense:2", [3, 1, 1], ["x", "y"],
             {"petal.run_state": '{"batch_in_epoch":0}'})))


def specs():
    for i, s in enumerate([
        "seednet", "flowernet", "conv3x3:8,maxpool2,dense:5", "conv3x3:4/p1,relu,maxpool2,dense:3",
        "conv5:4/s2/p2/nobias,maxpool3/s2,relu,flatten,dense:7/nobias", "conv1x3:2/p0,dense:2",
        "dense:3,relu,dense:2", "flatten,dense:1", "conv2x2:3/s2,relu,conv1x1:2,dense:4",
    ]):
        out("spec", str(i), bytes([0x3F ^ (i * 37 & 0xFF)]) + s.encode())
    # Found by the spec target: a network of only flattens panicked in forward_backward.
    out("spec", "regress-flatten-only", b"\x1cflatten")


def images():
    from PIL import Image

    base = Image.new("RGB", (3, 2), (200, 30, 40))
    base.putpixel((0, 0), (0, 0, 0))

    def save(name, img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        out("image_decode", name, b.getvalue())

    save("rgb.png", base, "PNG")
    save("gray.png", base.convert("L"), "PNG")
    save("la.png", base.convert("LA"), "PNG")
    save("rgba.png", base.convert("RGBA"), "PNG")
    save("pal.png", base.convert("P"), "PNG")
    save("i16.png", base.convert("I;16"), "PNG")
    save("rgb.jpg", base, "JPEG")
    save("gray.jpg", base.convert("L"), "JPEG")
    save("prog.jpg", base, "JPEG", progressive=True)
    save("cmyk.jpg", base.convert("CMYK"), "JPEG")
    save("rgb.gif", base, "GIF")
    save("rgb.bmp", base, "BMP")
    save("rgba.bmp", base.convert("RGBA"), "BMP")
    save("rgb.tif", base, "TIFF")
    save("f32.tif", base.convert("F"), "TIFF")
    save("lossless.webp", base, "WEBP", lossless=True)
    save("lossy.webp", base, "WEBP")
    save("gray.pgm", base.convert("L"), "PPM")


if __name__ == "__main__":
    checkpoints()
    specs()
    images()
