"""``bertforge fill-mask``: the masked-LM head's top-k tokens at every [MASK]."""

from __future__ import annotations

import argparse
import json

from bertforge.cli.embed import add_model_options, input_lines, require, with_warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--input", metavar="FILE",
                        help="UTF-8 text, one input per line, each with [MASK] (blank lines "
                             "are skipped)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per [MASK] (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per input instead of the readable listing")
    parser.add_argument("text", nargs="*", help='texts such as "Paris is the [MASK] of France."')


def run(args: argparse.Namespace) -> int:
    from bertforge.inference.fill_mask import MASK, FillMask

    require(args.model, "--model DIR", "fill-mask")
    if not args.input and not args.text:
        raise ValueError('fill-mask needs texts (e.g. "The capital of France is [MASK].") or '
                         "--input FILE")
    lines = input_lines(args.input, args.text)
    texts, names = [], []
    for number, line in enumerate(lines, start=1 - len(args.text)):
        if not line.strip():
            continue
        where = f"{args.input}:{number}" if number > 0 else f"text {number + len(args.text)}"
        if MASK not in line:
            raise ValueError(f"{where}: no {MASK} in {line[:60]!r}; write {MASK} where a word "
                             "should be predicted")
        texts.append(line)
        names.append(where)
    fill = FillMask.from_pretrained(args.model, device=args.device,
                                    max_length=args.max_seq_length)
    results = with_warnings("fill-mask", lambda: fill(texts, top_k=args.top_k,
                                                       batch_size=args.batch_size,
                                                       names=names))
    for text, masks in zip(texts, results, strict=True):
        if args.json:
            print(json.dumps({"text": text, "masks": [[p.to_dict() for p in m] for m in masks]},
                             ensure_ascii=False))
        else:
            print(text)
            for k, mask in enumerate(masks, start=1):
                best = "  ".join(f"{p.token} ({p.score:.4f})" for p in mask)
                print(f"  {MASK} {k}: {best}")
    return 0
