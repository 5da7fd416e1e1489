"""``bertforge extract``: per-token features of chosen layers (the paper's feature-based
approach), as Google's ``extract_features.py`` JSONL or a compact .npy + index."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from bertforge.cli.embed import add_model_options, require, with_warnings

FORMATS = (".jsonl", ".json", ".npy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--input", metavar="FILE",
                        help="UTF-8 text, one input per line; 'A ||| B' is a sentence pair")
    parser.add_argument("--out", metavar="FILE",
                        help="FILE.jsonl: Google's format, one object per line; FILE.npy: "
                             "all tokens' features [tokens, ...] + FILE.index.json (offsets, "
                             "tokens) for large inputs")
    parser.add_argument("--layers", default="-1,-2,-3,-4",
                        help="encoder layers, -1 = last (default -1,-2,-3,-4), or 'all'")
    # let "--layers -1,-2" parse: a value like -1,-2 is a list of numbers, not an option
    parser._negative_number_matcher = re.compile(r"^-\d+(,\s*-?\d+)*$")
    parser.add_argument("--combine", choices=("none", "concat", "sum", "mean"), default="none",
                        help="merge the layers per token (default none: keep each)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="value type of the .npy output (default float32)")


def run(args: argparse.Namespace) -> int:
    from bertforge.inference.batching import progress_bar
    from bertforge.inference.common import read_lines, split_pairs
    from bertforge.inference.extract import (
        FeatureExtractor,
        parse_layers,
        write_binary,
        write_jsonl,
    )

    for value, flag in ((args.model, "--model DIR"), (args.input, "--input FILE"),
                        (args.out, "--out FILE")):
        require(value, flag, "extract")
    out = Path(args.out)
    if out.suffix not in FORMATS:
        raise ValueError(f"--out {out}: unknown format '{out.suffix}'; use .jsonl (or .json) "
                         "or .npy")
    if not out.parent.is_dir():  # before the model loads and the inputs run, not after
        raise FileNotFoundError(f"--out {out}: directory {out.parent} does not exist")
    lines = read_lines(args.input)
    texts, pairs = split_pairs(lines)
    fx = FeatureExtractor.from_pretrained(args.model, device=args.device,
                                          max_length=args.max_seq_length)
    layers = parse_layers(args.layers, fx.num_layers)
    start = time.perf_counter()
    bar = progress_bar(len(texts), "extract", args.progress)

    def work() -> None:
        stream = fx.extract(texts, pairs, layers,
                            args.combine, args.batch_size, progress=bar)
        if out.suffix == ".npy":
            write_binary(out, stream, fx.token_counts(texts, pairs),
                         fx.feature_width(layers, args.combine), layers, args.combine,
                         args.dtype, model=str(args.model))
        else:
            write_jsonl(out, stream, layers, args.combine)

    try:
        with_warnings("extract", work)
    finally:
        bar.close()
    extra = f" + {out.with_name(out.stem + '.index.json')}" if out.suffix == ".npy" else ""
    print(f"wrote features of {len(texts)} inputs (layers {','.join(map(str, layers))}, "
          f"combine {args.combine}) to {out}{extra} in {time.perf_counter() - start:.1f} s")
    return 0
