"""``bertforge embed``: sentence embeddings of a file's lines (or of texts given), written as
.npy, .safetensors or JSONL. Also home of the options every inference command shares."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def add_model_options(parser: argparse.ArgumentParser, batch_size: int = 32) -> None:
    """--model, --device, --batch-size, --max-seq-length, --no-progress."""
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="checkpoint directory (config.json, model.safetensors, vocab.txt "
                             "or tokenizer.json)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N, mps or auto (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"inputs per forward pass (default {batch_size}); inputs are "
                             "sorted by length so batches carry little padding")
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="TOKENS",
                        help="cut longer inputs, with a warning (default: the model's limit, "
                             "256 for sentence-transformers models, else up to 512)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bar (default: one on stderr for long inputs)")


def require(value: object, flag: str, command: str) -> None:
    """The one-line error for a missing option."""
    if not value:
        raise ValueError(f"{command} needs {flag} (see 'bertforge {command} --help')")


def with_warnings(command: str, work: Callable[[], T]) -> T:
    """Run ``work``; bertforge's own warnings (empty or truncated inputs) print as one
    ``bertforge CMD: warning: …`` line each, other libraries' warnings as usual."""
    package = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            return work()
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning) and Path(w.filename).resolve(
                        ).is_relative_to(package):
                    print(f"bertforge {command}: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def input_lines(path: str | None, texts: list[str]) -> list[str]:
    """Texts given on the command line, then the lines of ``--input``."""
    from bertforge.inference.common import read_lines

    lines = list(texts)
    if path:
        lines += read_lines(path)
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--input", metavar="FILE", help="UTF-8 text, one sentence per line "
                        "(an empty line gives the embedding of an empty text)")
    parser.add_argument("--out", metavar="FILE", help="output: .npy [N, H] float32, "
                        ".safetensors (tensor 'embeddings') or .jsonl; default JSONL on stdout")
    parser.add_argument("--pooling", choices=("cls", "mean", "max"), default=None,
                        help="how token vectors become one vector (default: what a "
                             "sentence-transformers model declares, else mean)")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="L2-normalise each embedding (default: as the model declares, "
                             "else no)")
    parser.add_argument("text", nargs="*", help="texts to embed (besides --input)")


def run(args: argparse.Namespace) -> int:
    from bertforge.inference.embed import Embedder, check_output_path, write_embeddings

    require(args.model, "--model DIR", "embed")
    if not args.input and not args.text:
        raise ValueError("embed needs --input FILE or texts to embed")
    out = check_output_path(args.out) if args.out else None
    texts = input_lines(args.input, args.text)
    embedder = Embedder.from_pretrained(args.model, pooling=args.pooling,
                                        normalize=args.normalize, device=args.device,
                                        max_length=args.max_seq_length)
    start = time.perf_counter()
    vectors = with_warnings("embed", lambda: embedder.encode(
        texts, batch_size=args.batch_size, progress=args.progress))
    seconds = time.perf_counter() - start
    if out is None:
        for i, row in enumerate(vectors):
            print(json.dumps({"index": i, "text": texts[i], "embedding": row.tolist()},
                             ensure_ascii=False))
        return 0
    write_embeddings(out, vectors, texts, metadata={
        "model": str(Path(args.model)), "pooling": embedder.pooling,
        "normalize": embedder.normalize, "max_seq_length": embedder.max_length})
    print(f"wrote {len(texts)} embeddings of dimension {embedder.dimension} "
          f"({embedder.pooling} pooling{', normalised' if embedder.normalize else ''}) to "
          f"{out} in {seconds:.1f} s ({len(texts) / max(seconds, 1e-9):.0f} inputs/s)")
    return 0
