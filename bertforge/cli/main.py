"""The command line: one dispatch table, one module per command.

Every command module has ``add_arguments(parser)`` and ``run(args) -> int``. Known
errors print one line (``bertforge: error: …``) and exit 2; ``--debug`` shows the
traceback instead. ``--config FILE.yaml`` supplies defaults that flags override.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path

from bertforge.runtime import tune_allocator

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("bertforge.cli.info", "parameter counts of a preset or a model"),
    "tokenizer": ("bertforge.cli.tokenizer", "train or apply a WordPiece tokenizer"),
    "convert": ("bertforge.cli.convert", "convert checkpoints (Google TF, Hugging Face)"),
    "demo": ("bertforge.cli.demo", "the end-to-end demonstration"),
    "finetune": ("bertforge.cli.finetune", "fine-tune on GLUE, your data, SQuAD, NER, SWAG"),
    "evaluate": ("bertforge.cli.evaluate", "score a fine-tuned model on dev data"),
    "predict": ("bertforge.cli.predict", "predictions of a fine-tuned model"),
    "bench": ("bertforge.cli.bench", "speed against transformers on the same real batches"),
    "data": ("bertforge.cli.data", "build, inspect and export pre-training data"),
    "pretrain": ("bertforge.cli.pretrain", "pre-train BERT (MLM + NSP/SOP, or LTR)"),
    "fill-mask": ("bertforge.cli.fill_mask", "top-k tokens for each [MASK] in a text"),
    "embed": ("bertforge.cli.embed", "sentence embeddings to .npy, .safetensors or JSONL"),
    "extract": ("bertforge.cli.extract", "per-token features of chosen layers (feature-based)"),
    "export": ("bertforge.cli.export", "export a model to ONNX, checked under onnxruntime"),
    "serve": ("bertforge.cli.serve", "an HTTP JSON server: embed, fill-mask, predict"),
}


class UsageError(ValueError):
    """A bad command line or config file."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only`` (a command name), only that command's module is
    imported and given its options: the others are listed by name and help text. Commands
    that need no model (``data``, ``tokenizer``) then start without importing torch."""
    parser = argparse.ArgumentParser(prog="bertforge", description="BERT as a working tool.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", metavar="FILE.yaml",
                         help="YAML file of option values; command-line flags override it")
        if only is None or only == name:
            import_module(module).add_arguments(cmd)
        cmd.set_defaults(_module=module, _parser=cmd)
    return parser


def _version() -> str:
    from bertforge import __version__
    return f"bertforge {__version__}"


def apply_yaml(parser: argparse.ArgumentParser, args: argparse.Namespace,
               argv: Sequence[str]) -> argparse.Namespace:
    """Re-parse with the YAML file's values as defaults, so flags given still win."""
    if not getattr(args, "config", None):
        return args
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {a.dest for a in args._parser._actions} - {"help", "config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(unknown)} for "
                         f"'bertforge {args.command}'; see 'bertforge {args.command} --help'")
    args._parser.set_defaults(**values)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    tune_allocator()
    try:
        args = apply_yaml(parser, args, argv)
        with private_caches(compiling=bool(getattr(args, "compile", False))):
            return int(import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("bertforge: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; --debug for the traceback
        if args.debug or not _is_user_error(err):
            raise
        print(f"bertforge {args.command}: error: {err}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def private_caches(compiling: bool = False) -> Iterator[None]:
    """Point third-party caches the user has not placed (matplotlib's font cache, which
    would go to ~/.cache; torch's compile cache, created in $TMPDIR as soon as an optimizer
    exists) at a temporary folder removed afterwards: a command writes nothing outside its
    output. Set MPLCONFIGDIR / TORCHINDUCTOR_CACHE_DIR to keep them; with --compile torch's
    cache stays where torch puts it (compiling again every run would be slow)."""
    owners = {"MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torch._dynamo"}
    if compiling:
        owners.pop("TORCHINDUCTOR_CACHE_DIR")
    names = [n for n, module in owners.items()  # too late once the library has started
             if n not in os.environ and module not in sys.modules]
    if not names:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bertforge-caches-") as tmp:
        os.environ.update({n: os.path.join(tmp, n.lower()) for n in names})
        try:
            yield
        finally:
            for name in names:
                os.environ.pop(name, None)


def _is_user_error(err: Exception) -> bool:
    """Errors caused by input (files, values), as opposed to bugs in bertforge."""
    return isinstance(err, (ValueError, FileNotFoundError, PermissionError,
                            IsADirectoryError, NotADirectoryError, UnicodeDecodeError))
