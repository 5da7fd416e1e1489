"""Throughput of ``bertforge data create`` on ../shared/data/corpus-en-books.

The books are first converted (untimed) to Google's input format, one sentence per line
and a blank line between books, as google-research/bert's reference figure was measured
on that format. Each run is a fresh ``python -m bertforge data create`` process
(length-128 instances, dupe factor 1, static masks, the uncased BERT vocabulary); the
figures are the child processes' CPU time (user + sys), wall time and peak RSS
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest single process).

    python bench/bench_data.py                      # 1 and 2 workers, 2 runs each
    python bench/bench_data.py --workers 1 --repeat 3 --fraction 0.25
    python bench/bench_data.py --mode file          # raw books, --input-format text --doc-sep file
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BOOKS = DATA / "corpus-en-books"
VOCAB = DATA / "vocab" / "bert_uncased_en_vocab.txt"


def book_files(fraction: float) -> list[Path]:
    files = sorted(BOOKS.rglob("*.txt"))
    return files[:max(1, round(len(files) * fraction))]


def to_sentence_lines(files: list[Path], out: Path) -> Path:
    """One sentence per line (bertforge's splitter), a blank line between books."""
    sys.path.insert(0, str(ROOT))
    from bertforge.pretraining.reader import split_sentences

    with out.open("w", encoding="utf-8") as fh:
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
            sentences = []
            for para in re.split(r"\n\s*\n", text):
                sentences += split_sentences(para.replace("\n", " "))
            fh.write("\n".join(sentences) + "\n\n")
    return out


_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.perf_counter() - start
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024}))
"""


def run_once(inputs: list[Path], fmt: list[str], workers: int, out: Path) -> dict:
    """One fresh process (inside a small wrapper, so that ``ru_maxrss`` is this run's):
    CPU, wall and peak memory of it and its workers."""
    cmd = [sys.executable, "-m", "bertforge", "data", "create", "--tokenizer", str(VOCAB),
           "--out", str(out), "--dupe-factor", "1", "--max-seq-length", "128", "--quiet",
           "--workers", str(workers), *fmt, "--input", *map(str, inputs)]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], check=True, cwd=ROOT,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the books")
    parser.add_argument("--mode", choices=("sentences", "file"), default="sentences")
    args = parser.parse_args()
    if not BOOKS.is_dir():
        print(f"skipped: {BOOKS} not found", file=sys.stderr)
        return 0
    files = book_files(args.fraction)
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "sentences":
            inputs, fmt = [to_sentence_lines(files, Path(tmp) / "books.txt")], []
        else:
            inputs, fmt = files, ["--input-format", "text", "--doc-sep", "file"]
        mb = sum(p.stat().st_size for p in inputs) / 1e6
        print(f"input: {mb:.1f} MB ({args.mode} mode, {len(files)} books)")
        print("| workers | run | wall s | CPU s | MB/s (wall) | MB per CPU-s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for workers in args.workers:
            for r in range(args.repeat):
                res = run_once(inputs, fmt, workers, Path(tmp) / f"out{workers}-{r}")
                print(f"| {workers} | {r + 1} | {res['wall']:.1f} | {res['cpu']:.1f} | "
                      f"{mb / res['wall']:.1f} | {mb / res['cpu']:.2f} | {res['rss_mb']:.0f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
