"""``bertforge data create|inspect|export``: build, look at and export pre-training data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_CONFIG_FIELDS = ("max_seq_length", "short_seq_prob", "masked_lm_prob",
                  "max_predictions_per_seq", "masking", "dupe_factor", "objective", "pack",
                  "seed",
                  "input_format", "doc_sep", "jsonl_field", "num_shards", "shard_index")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    _add_create(sub.add_parser("create", help="text files -> a shard directory of instances"))
    ins = sub.add_parser("inspect", help="statistics and a few decoded instances")
    ins.add_argument("dir", nargs="?", default=None, metavar="DIR")
    ins.add_argument("--num", type=int, default=3, help="instances to decode [3]")
    ins.add_argument("--start", type=int, default=0, help="first instance to decode [0]")
    ins.add_argument("--tokenizer", metavar="DIR", default=None,
                     help="tokenizer to decode with [the one recorded in meta.json]")
    exp = sub.add_parser("export", help="one JSON object per instance")
    exp.add_argument("dir", nargs="?", default=None, metavar="DIR")
    exp.add_argument("--out", metavar="FILE.jsonl", default=None)
    exp.add_argument("--limit", type=int, default=None, help="write at most this many")
    for action in (sub.choices["create"], ins, exp):
        # so that 'bertforge data create --config FILE.yaml' reads the action's options
        action.add_argument("--config", metavar="FILE.yaml",
                            help="YAML file of option values; command-line flags override it")
        action.set_defaults(_parser=action)


def _add_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", default=None, metavar="PATH",
                   help="text files (.gz allowed), directories or globs")
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="directory with tokenizer.json or vocab.txt (or the file)")
    p.add_argument("--out", metavar="DIR", default=None, help="new shard directory")
    p.add_argument("--input-format", choices=("sentences", "text", "jsonl"),
                   help="sentences: one per line, blank line between documents (Google); "
                        "text: plain text split into sentences; jsonl [sentences]")
    p.add_argument("--doc-sep", choices=("blank-line", "file"),
                   help="for --input-format text: documents end at blank lines or files")
    p.add_argument("--jsonl-field", metavar="NAME", help="JSONL field with the text [text]")
    p.add_argument("--max-seq-length", type=int, help="[128]")
    p.add_argument("--short-seq-prob", type=float, help="[0.1]")
    p.add_argument("--masked-lm-prob", type=float, help="[0.15]")
    p.add_argument("--max-predictions-per-seq", type=int, help="[20]")
    p.add_argument("--whole-word-mask", action="store_true", default=None)
    p.add_argument("--masking", choices=("static", "dynamic"),
                   help="static: masks stored (dupe-factor copies); dynamic: drawn per batch")
    p.add_argument("--dupe-factor", type=int, help="[10 static, 1 dynamic]")
    p.add_argument("--objective", choices=("nsp", "sop", "none", "mlm"),
                   help="nsp, sop, or none (= mlm): masked LM only [nsp]")
    p.add_argument("--pack", action="store_true", default=None,
                   help="with --objective none/mlm: fill each row with several "
                        "[CLS] segment [SEP] instead of padding (block-diagonal attention)")
    p.add_argument("--seed", type=int, help="[12345]")
    p.add_argument("--workers", type=int, default=1, help="processes [1]")
    p.add_argument("--num-shards", type=int, help="split the documents into K parts [1]")
    p.add_argument("--shard-index", type=int, help="build part I of --num-shards [0]")
    p.add_argument("--keep-docstore", action="store_true", default=None,
                   help="keep the tokenised document store (DIR/docstore)")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars")


def run(args: argparse.Namespace) -> int:
    actions = {"create": _create, "inspect": _inspect, "export": _export}
    if args.action not in actions:
        raise ValueError("choose an action: 'bertforge data create', 'inspect' or 'export' "
                         "(see --help)")
    return actions[args.action](args)


def _create(args: argparse.Namespace) -> int:
    from bertforge.cli.tokenizer import TEXT_SUFFIXES, expand_paths
    from bertforge.pretraining import CreateConfig, create_pretraining_data
    from bertforge.tokenization import load_tokenizer

    if not args.input or not args.tokenizer or not args.out:
        raise ValueError("data create needs --input PATH..., --tokenizer DIR and --out DIR")
    given = {k: getattr(args, k) for k in _CONFIG_FIELDS if getattr(args, k) is not None}
    if given.get("objective") == "mlm":  # the training objective's name for it
        given["objective"] = "none"
    config = CreateConfig(**given, whole_word_mask=bool(args.whole_word_mask))
    files = expand_paths(args.input, (".jsonl", ".jsonl.gz", ".json") if
                         config.input_format == "jsonl" else TEXT_SUFFIXES)
    tokenizer = load_tokenizer(args.tokenizer)
    progress = not args.quiet and sys.stderr.isatty()
    meta = create_pretraining_data(files, tokenizer, args.out, config, workers=args.workers,
                                   progress=progress, keep_docstore=bool(args.keep_docstore))
    c, r = meta["counts"], meta["reading"]
    packed = f" ({c['segments']:,} segments packed)" if "segments" in c else ""
    print(f"wrote {args.out}: {c['instances']:,} instances{packed}, {c['tokens']:,} tokens, "
          f"{c['masked_tokens']:,} masked, from {c['documents']:,} documents "
          f"({r['bytes'] / 1e6:.1f} MB in {r['files']} file(s))")
    _print_warnings(r)
    return 0


def _print_warnings(reading: dict) -> None:
    notes = {"replaced_utf8_lines": "line(s) with invalid UTF-8 (bytes replaced)",
             "binary_files_skipped": "binary file(s) skipped",
             "long_lines_split": "very long line(s) read in parts",
             "long_sentences_split": "sentence(s) longer than a sequence cut into parts",
             "empty_documents": "empty document(s) skipped",
             "bad_json_lines": "JSONL line(s) without a text field skipped"}
    for key, text in notes.items():
        if reading.get(key):
            print(f"warning: {reading[key]:,} {text}", file=sys.stderr)
    for message in reading.get("warnings", []):
        print(f"warning: {message}", file=sys.stderr)


def _inspect(args: argparse.Namespace) -> int:
    from bertforge.pretraining import ShardDataset
    from bertforge.pretraining.report import describe_instance, statistics

    if not args.dir:
        raise ValueError("data inspect needs DIR (a shard directory)")
    ds = ShardDataset(args.dir)
    tokenizer = _tokenizer_for(ds, args.tokenizer)
    print(json.dumps({"parameters": ds.meta["parameters"], "statistics": statistics(ds),
                      "reading": ds.meta["reading"]}, indent=1, ensure_ascii=False))
    for i in range(args.start, min(len(ds), args.start + args.num)):
        print(describe_instance(ds, i, tokenizer))
    return 0


def _tokenizer_for(ds, path: str | None):
    """The given tokenizer, else the one in meta.json if it still exists and matches."""
    from bertforge.tokenization import load_tokenizer

    recorded = ds.meta["tokenizer"]
    if path is None:
        source = Path(recorded["source"])
        if not source.exists():
            print(f"note: {source} not found; showing ids (give --tokenizer DIR)",
                  file=sys.stderr)
            return None
        path = str(source)
    tok = load_tokenizer(path, lowercase=recorded["lowercase"])
    if tok.fingerprint() != recorded["fingerprint"]:
        print(f"warning: {path} is not the tokenizer the data was built with", file=sys.stderr)
    return tok


def _export(args: argparse.Namespace) -> int:
    from bertforge.pretraining import ShardDataset
    from bertforge.pretraining.report import export_jsonl

    if not args.dir or not args.out:
        raise ValueError("data export needs DIR and --out FILE.jsonl")
    n = export_jsonl(ShardDataset(args.dir), args.out, args.limit)
    print(f"wrote {n:,} instances to {args.out}")
    return 0
