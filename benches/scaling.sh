#!/usr/bin/env bash
# Thread scaling of `trainer bench` (design §9, issue 6): images/s for 1, 2, 4, 8 and 16
# threads (or THREADS), seednet and flowernet at batch 32 and 128 (or BATCHES), for one or more trainer
# binaries measured alternately config by config (so drift hits them alike).
#
#   benches/scaling.sh OUTDIR BIN [BIN...]
#
# Writes OUTDIR/machine.txt (lscpu, nproc) and OUTDIR/scaling.jsonl (one `trainer bench
# --json` object per line, with the binary's name added) as it goes, then prints the table
# of speed-ups over 1 thread. Each configuration runs SECONDS (default 2) seconds. Build a
# portable binary for another machine with
#   RUSTFLAGS="-C target-cpu=x86-64-v3" cargo build --release -p petal-trainer --target-dir target/v3
set -euo pipefail
out=$1
shift
mkdir -p "$out"
threads=${THREADS:-1,2,4,8,16}
seconds=${SECONDS_PER_CONFIG:-2}
batches=${BATCHES:-32,128}
{ nproc; lscpu; } >"$out/machine.txt" 2>&1 || true
jsonl="$out/scaling.jsonl"
: >"$jsonl"
for arch in seednet flowernet; do
    for batch in ${batches//,/ }; do
        for t in ${threads//,/ }; do
            for bin in "$@"; do
                name=$(basename "$bin")
                "$bin" bench --arch "$arch" --batch-size "$batch" --threads "$t" --seconds "$seconds" --json |
                    sed "s/^{/{\"binary\":\"$name\",/" >>"$jsonl"
                tail -n 1 "$jsonl"
            done
        done
    done
done
python3 - "$jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = {}
for r in rows:
    if r["threads"] == 1:
        base[(r["binary"], r["arch"], r["batch_size"])] = r
print(f"{'binary':<16} {'arch':<10} {'batch':>5} {'threads':>7} {'train img/s':>12} {'x1':>6} {'infer img/s':>12} {'x1':>6}")
for r in rows:
    b = base.get((r["binary"], r["arch"], r["batch_size"]))
    st = r["train_images_per_sec"] / b["train_images_per_sec"] if b else float("nan")
    si = r["infer_images_per_sec"] / b["infer_images_per_sec"] if b else float("nan")
    print(f"{r['binary']:<16} {r['arch']:<10} {r['batch_size']:>5} {r['threads']:>7} "
          f"{r['train_images_per_sec']:>12,.0f} {st:>6.2f} {r['infer_images_per_sec']:>12,.0f} {si:>6.2f}")
PY
