#!/usr/bin/env python3
"""PyTorch reference for Petal's training and inference throughput.

The same networks and training step as `trainer bench`: seednet (conv3x3:8, maxpool2,
dense 5 on 1x50x50), flowernet (3 x [conv3x3 pad 1, ReLU, maxpool2] with 16/32/64
filters, dense 5 on 3x64x64), and the CIFAR ResNets resnet8 and resnet20 on 3x32x32
(built from Petal's preset specs by python/petal_torch.py; batch norms in training mode
for training, in eval mode for inference); float32, random data, mean softmax
cross-entropy, backward, plain SGD (lr 0.005); warm-up, then the median of several timed
runs. ARCH@SIZE (e.g. resnet8@64) changes a preset's input size.

    python3 benches/pytorch_reference.py [--arch seednet,flowernet] [--batch 1,32,128]
        [--threads 1,2] [--seconds 2] [--json] [--channels-last]
    python3 benches/pytorch_reference.py --compare [--trainer target/release/trainer] [--conv-algo auto,direct] ...

--compare runs `trainer bench --json` and this script's measurement alternately, one
configuration at a time on the same machine, and prints the ratio table with each side's
SIMD level (Petal's build, PyTorch's ATen CPU capability) and the training GFLOP/s as a
share of the machine's peak: threads x the one-core sgemm peak, measured first in the same
run (the best of numpy's BLAS and torch.mm on 2048x2048, one thread). To hold PyTorch to
AVX2 on an AVX-512 machine (for an AVX2 build of Petal, RUSTFLAGS="-C
target-cpu=x86-64-v3"):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python3 ...
For a fair
PyTorch figure preload tcmalloc (Debian's libtcmalloc-minimal4):
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python3 benches/pytorch_reference.py ...
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn


def build(arch):
    if "@" in arch:
        name, size = arch.split("@")
        net, (c, _, _) = build(name)
        if name in ("resnet8", "resnet20"):
            import petal_torch
            return petal_torch.build(petal_torch.preset_spec(name, 5), [c, int(size), int(size)]), (c, int(size), int(size))
        raise SystemExit(f"{arch}: only the ResNets take @SIZE here")
    if arch in ("resnet8", "resnet20"):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
        import petal_torch
        return petal_torch.build(petal_torch.preset_spec(arch, 5), [3, 32, 32]), (3, 32, 32)
    if arch == "seednet":
        net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 24 * 24, 5))
        return net, (1, 50, 50)
    if arch == "flowernet":
        layers, c = [], 3
        for out in (16, 32, 64):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        layers += [nn.Flatten(), nn.Linear(64 * 8 * 8, 5)]
        return nn.Sequential(*layers), (3, 64, 64)
    raise SystemExit(f"unknown arch {arch}")


def rate(batch, seconds, runs, fn):
    t = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - t < 0.05 * seconds:
        fn()
        calls += 1
    per_call = (time.perf_counter() - t) / calls
    reps = max(1, int((seconds / runs) / per_call + 0.999))
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        rates.append(reps * batch / (time.perf_counter() - t))
    return statistics.median(rates)


def measure(arch, batch, threads, seconds, channels_last, runs=5):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net, shape = build(arch)
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 5, (batch,))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.005)
    loss_fn = nn.CrossEntropyLoss()

    def train():
        net.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    def infer():
        net.eval()
        with torch.inference_mode():
            torch.softmax(net(x), dim=1)

    return {
        "impl": "pytorch" + ("-channels_last" if channels_last else ""),
        "torch": torch.__version__,
        "arch": arch,
        "batch_size": batch,
        "threads": threads,
        "train_images_per_sec": rate(batch, seconds / 2, runs, train),
        "infer_images_per_sec": rate(batch, seconds / 2, runs, infer),
        "malloc": "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "default",
        "simd": torch.backends.cpu.get_cpu_capability().lower(),
    }


def sgemm_peak(n=2048, reps=5):
    """One-core sgemm GFLOP/s: the best of numpy's BLAS (in a child process with one
    thread, OPENBLAS_CORETYPE/L2_SIZE unset so it picks its own kernel) and torch.mm."""
    code = (
        "import numpy as np, time\n"
        f"a = np.random.rand({n}, {n}).astype(np.float32); b = a.copy(); a @ b\n"
        "best = 0.0\n"
        f"for _ in range({reps}):\n"
        "    t = time.perf_counter(); a @ b; best = max(best, 2 * a.shape[0] ** 3 / (time.perf_counter() - t) / 1e9)\n"
        "print(best)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LD_PRELOAD")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        numpy_peak = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                          text=True, env=env).stdout)
    except (subprocess.CalledProcessError, ValueError):
        numpy_peak = 0.0
    torch.set_num_threads(1)
    a = torch.rand(n, n)
    torch.mm(a, a)
    torch_peak = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, a)
        torch_peak = max(torch_peak, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return {"numpy": numpy_peak, "torch": torch_peak, "peak": max(numpy_peak, torch_peak)}


def petal(trainer, arch, batch, threads, seconds, algo):
    out = subprocess.run(
        [trainer, "bench", "--json", "--arch", arch.split("@")[0], "--batch-size", str(batch), "--threads",
         str(threads), "--seconds", str(seconds), "--conv-algo", algo]
        + (["--size", arch.split("@")[1]] if "@" in arch else []),
        check=True, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="seednet,flowernet")
    p.add_argument("--batch", default="1,32,128")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="also measure channels_last")
    p.add_argument("--compare", action="store_true", help="alternate with `trainer bench --json`")
    p.add_argument("--trainer", default="target/release/trainer")
    p.add_argument("--conv-algo", default="auto",
                   help="Petal's --conv-algo values to measure, comma-separated (auto, winograd, direct)")
    a = p.parse_args()
    configs = [(arch, int(b), int(t)) for arch in a.arch.split(",") for b in a.batch.split(",")
               for t in a.threads.split(",")]
    rows = []
    peak = sgemm_peak() if a.compare else None
    if peak:
        line = (f"one-core sgemm peak {peak['peak']:.1f} GFLOP/s (numpy {peak['numpy']:.1f}, torch.mm "
                f"{peak['torch']:.1f}; 2048x2048, 1 thread); torch {torch.__version__}")
        print(json.dumps({"sgemm_peak": peak}) if a.json else line, flush=True)
    for arch, b, t in configs:
        algos = a.conv_algo.split(",")
        ours = [petal(a.trainer, arch, b, t, a.seconds, algo) for algo in algos] if a.compare else []
        theirs = [measure(arch, b, t, a.seconds, False)]
        if a.channels_last and arch.split("@")[0] in ("flowernet", "resnet8", "resnet20"):
            theirs.append(measure(arch, b, t, a.seconds, True))
        for r in theirs:
            if a.json:
                print(json.dumps(r), flush=True)
        for r in ours if a.json else []:
            print(json.dumps({"impl": "petal", **r}), flush=True)
        rows.append((arch, b, t, ours, theirs))
        if not a.json:
            best_t = max(r["train_images_per_sec"] for r in theirs)
            best_i = max(r["infer_images_per_sec"] for r in theirs)
            line = (f"{arch:>9} batch {b:>3} threads {t}:  torch [{theirs[0]['simd']}] train {best_t:>9,.0f}"
                    f"  infer {best_i:>9,.0f} img/s")
            if ours:
                # Same network, same FLOPs per image: Petal's count serves both sides (its
                # direct-method count, also for Winograd, which does fewer multiplies).
                flops = ours[0]["train_gflops"] / ours[0]["train_images_per_sec"]
                share = lambda ips: 100 * ips * flops / (t * peak["peak"]) if peak["peak"] else float("nan")
                line += f" ({share(best_t):3.0f} % of peak)"
            for r in ours:
                line += (f"  | petal {r.get('conv_algo', 'direct')} [{r.get('simd', '?')}] train"
                         f" {r['train_images_per_sec']:>9,.0f} ({r['train_images_per_sec'] / best_t:4.1f}x,"
                         f" {share(r['train_images_per_sec']):3.0f} % of peak)"
                         f"  infer {r['infer_images_per_sec']:>9,.0f} ({r['infer_images_per_sec'] / best_i:4.1f}x)")
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
