#!/usr/bin/env bash
# The GPU figures of issues 4 and 7 in as few device calls as a lent machine allows.
#
#   bash bench/gpu_suite.sh stage       # here: copy the books and vocabulary the runs need
#                                       # into gpu_data/ (git-ignored; carry it: ≤ 64 MiB)
#   bash bench/gpu_suite.sh bench       # device call 1 (~6 min): bench pretrain base at 128
#                                       # and 512, bench inference, bf16, ours vs transformers
#   bash bench/gpu_suite.sh pretrain    # device call 2 (~9.5 min): base at 128 for a fixed
#                                       # 8 minutes on the books, held-out MLM/NSP curves
#
# On the device machine the image's python3 has torch, transformers, numpy, safetensors,
# tqdm, pyyaml and matplotlib; bertforge runs from the working tree (PYTHONPATH), nothing
# is installed. Results go to $OUT (JSON, metrics.jsonl, curves.png, logs); the last lines
# printed are a summary. Record them in bench/RESULTS.md with the device, torch version,
# date and these commands.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash bench/gpu_suite.sh stage|bench|pretrain}
OUT=${OUT:-/tmp/gpu_suite_out}
DATA=gpu_data
VOCAB=$DATA/vocab/bert_uncased_en_vocab.txt
PY=${PYTHON:-python3}
# overridable for a plumbing check on a CPU: DEVICE=cpu PRESET=tiny MINUTES=0.2 STEPS=2
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-base}; MINUTES=${MINUTES:-8}; STEPS=${STEPS:-20}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

case $stage in
stage)
    src=../shared/data
    rm -rf "$DATA" && mkdir -p "$DATA/vocab" "$DATA/corpus-en-books"
    cp "$src/vocab/bert_uncased_en_vocab.txt" "$DATA/vocab/"
    for task in MRPC SST-2; do  # `bench inference` reads their dev sets
        mkdir -p "$DATA/glue/$task" && cp "$src/glue/$task/dev.tsv" "$DATA/glue/$task/"
    done
    # books in name order up to ~48 MB (about 12M tokens: 8 minutes of base on an H100
    # sees each one a few times); the last two are held out
    total=0
    find "$src/corpus-en-books" -name '*.txt' | sort | while read -r f; do
        size=$(stat -c %s "$f"); total=$((total + size))
        [ "$total" -gt 48000000 ] && break
        rel=${f#"$src/corpus-en-books/"}
        mkdir -p "$DATA/corpus-en-books/$(dirname "$rel")"
        cp "$f" "$DATA/corpus-en-books/$rel"
    done
    du -sh "$DATA"
    ;;
bench)
    (nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
    $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', \
transformers.__version__)" | tee -a "$OUT/gpu.txt"
    for run in "pretrain 128 64" "pretrain 512 16" "inference 128 128"; do
        set -- $run
        $PY -m bertforge bench "$1" --preset "$PRESET" --seq-len "$2" --batch-size "$3" \
            --device "$DEVICE" --precision bf16 --steps "$STEPS" --warmup 5 --data-dir "$DATA" \
            --vocab "$VOCAB" --json > "$OUT/bench_$1_$2.json" 2> "$OUT/bench_$1_$2.log" \
            || echo "bench $1 $2 failed: see bench_$1_$2.log" | tee -a "$OUT/summary.txt"
    done
    $PY - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
for f in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    try:
        r = json.loads(f.read_text())
    except ValueError:
        print(f.name, "no JSON"); continue
    print(f.name, {k: r[k] for k in r if not isinstance(r[k], (dict, list))})
EOF
    ;;
pretrain)
    books=$(find "$DATA/corpus-en-books" -name '*.txt' | sort)
    train=$(echo "$books" | head -n -2); held=$(echo "$books" | tail -n 2)
    # shellcheck disable=SC2086
    $PY -m bertforge data create --input $train --tokenizer "$VOCAB" --out "$OUT/shards" \
        --input-format text --doc-sep file --max-seq-length 128 --masking dynamic \
        --workers 8 --quiet
    # shellcheck disable=SC2086
    $PY -m bertforge data create --input $held --tokenizer "$VOCAB" \
        --out "$OUT/shards_heldout" --input-format text --doc-sep file --max-seq-length 128 \
        --masking dynamic --seed 1 --quiet
    timeout 560 $PY -m bertforge pretrain --data "$OUT/shards" --eval-data "$OUT/shards_heldout" \
        --tokenizer "$VOCAB" --out "$OUT/base128" --preset "$PRESET" --device "$DEVICE" \
        --precision bf16 --batch-size 256 --lr 1e-4 --warmup-steps 300 --max-time "$MINUTES" \
        --max-steps 100000 --schedule-steps 10000 --eval-every 200 --eval-batches 10 \
        --save-every 1000000000 --no-tensorboard --quiet > "$OUT/pretrain.log" 2>&1 \
        || echo "pretrain exited $?: see pretrain.log" | tee -a "$OUT/summary.txt"
    rm -rf "$OUT/shards" "$OUT/shards_heldout" "$OUT/base128/final" "$OUT/base128"/checkpoint-*
    tail -n 3 "$OUT/pretrain.log"
    $PY - "$OUT/base128/metrics.jsonl" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
evals = [(r["step"], round(r["eval_mlm_acc"], 3), round(r.get("eval_nsp_acc", 0), 3))
         for r in rows if "eval_mlm_acc" in r]
last = rows[-1]
print("steps", last["step"], "real tokens", last["tokens"], "tok/s",
      round(last.get("tokens_per_s", 0)), "elapsed", round(last.get("elapsed_s", 0)))
print("eval (step, mlm acc, nsp acc):", evals)
EOF
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
