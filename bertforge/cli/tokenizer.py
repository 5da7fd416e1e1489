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
                       help="text files (.gz allowed), directories (their .txt files, or "
                            "every file when none is .txt) or globs")
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


TEXT_SUFFIXES = (".txt", ".txt.gz", ".text")


def expand_paths(specs: list[str], suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> list[Path]:
    """Files, directories and globs -> a file list (files and globs as given; the files
    under a directory sorted).

    A directory gives its files at any depth except hidden ones (``.DS_Store``, ``.git``),
    and when some of them end in one of ``suffixes``, only those: a corpus folder's
    ``index.tsv`` or ``README.md`` is not text to learn from. What a directory's files
    leave out is named on stderr."""
    import glob

    out: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            out.extend(_directory_files(path, suffixes))
        elif path.is_file():
            out.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{spec}: no such file, directory or glob match")
            out.extend(p for p in matches if p.is_file())
    return out


def _directory_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise FileNotFoundError(f"{folder}: a directory with no (visible) files in it")
    chosen = [p for p in files if p.name.lower().endswith(suffixes)] or files
    left = [p for p in files if p not in set(chosen)]
    if left:
        shown = ", ".join(str(p.relative_to(folder)) for p in left[:5])
        print(f"{folder}: reading its {len(chosen)} {'/'.join(suffixes)} file(s); left out "
              f"{len(left)} other file(s): {shown}{' …' if len(left) > 5 else ''}",
              file=sys.stderr)
    return chosen


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
