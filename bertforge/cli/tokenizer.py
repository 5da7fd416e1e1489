"""``bertforge tokenizer train|encode``: build a WordPiece vocabulary, or apply one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    train = sub.add_parser("train", help="learn a WordPiece vocabulary from text files")
    train.add_argument("--corpus", nargs="+", default=None, metavar="FILE",
                       help="text files (.gz allowed), directories or globs")
    train.add_argument("--vocab-size", type=int, default=30522)
    train.add_argument("--out", metavar="DIR", default=None)
    train.add_argument("--cased", action="store_true", help="keep case and accents")
    train.add_argument("--min-frequency", type=int, default=2)
    train.add_argument("--config", metavar="FILE.yaml", help="YAML file of option values")
    train.set_defaults(_parser=train)
    enc = sub.add_parser("encode", help="print tokens and ids, one JSON object per line")
    enc.add_argument("--tokenizer", metavar="DIR", default=None,
                     help="directory with tokenizer.json or vocab.txt")
    enc.add_argument("--input", metavar="FILE", help="one text per line ('A ||| B' for pairs)")
    enc.add_argument("text", nargs="*", help="texts to encode")
    enc.add_argument("--config", metavar="FILE.yaml", help="YAML file of option values")
    enc.set_defaults(_parser=enc)


def expand_paths(specs: list[str]) -> list[Path]:
    """Files, directories (every file inside, sorted) and globs -> a sorted file list."""
    import glob

    out: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{spec}: no such file, directory or glob match")
            out.extend(p for p in matches if p.is_file())
    return out


def run(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    if args.action == "encode":
        return _encode(args)
    raise ValueError("choose an action: 'bertforge tokenizer train' or 'bertforge tokenizer "
                     "encode' (see --help)")


def _train(args: argparse.Namespace) -> int:
    from bertforge.tokenization import train_wordpiece

    if not args.corpus or not args.out:
        raise ValueError("tokenizer train needs --corpus FILE... and --out DIR")
    files = expand_paths(args.corpus)
    tok = train_wordpiece(files, args.vocab_size, lowercase=not args.cased,
                          min_frequency=args.min_frequency, show_progress=sys.stderr.isatty())
    tok.save(args.out)
    print(f"wrote {args.out}/vocab.txt ({len(tok.vocab)} tokens, "
          f"{'cased' if args.cased else 'uncased'}) from {len(files)} file(s)")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from bertforge.tokenization import load_tokenizer
    from bertforge.tokenization.io import read_utf8_lines

    if not args.tokenizer:
        raise ValueError("tokenizer encode needs --tokenizer DIR")
    tok = load_tokenizer(args.tokenizer)
    lines = list(args.text)
    if args.input:
        lines += read_utf8_lines(args.input, ValueError)
    for line in lines:
        a, _, b = line.partition(" ||| ")
        enc = tok.encode(a, b or None)
        print(json.dumps({"tokens": enc.tokens, "ids": enc.ids, "type_ids": enc.type_ids,
                          "offsets": enc.offsets}, ensure_ascii=False))
    return 0
