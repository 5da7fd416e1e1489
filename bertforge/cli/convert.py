"""``bertforge convert``: any supported checkpoint -> a Hugging Face-shaped directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from bertforge.interop.checkpoint import Checkpoint

# a sentence-transformers model's own files besides the transformer's
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="DIR", default=None,
                        help="a Google TF checkpoint directory (bert_config.json, "
                             "bert_model.ckpt.*, vocab.txt) or a Hugging Face directory")
    parser.add_argument("--to", dest="target", metavar="DIR", default=None,
                        help="output directory: config.json, model.safetensors, vocab.txt, "
                             "tokenizer.json; or FILE.onnx for ONNX (checked under "
                             "onnxruntime, as 'bertforge export')")
    parser.add_argument("--format", choices=("hf", "google"), default="hf",
                        help="what --to DIR holds: hf (Hugging Face) or google (Google's "
                             "TensorFlow layout: bert_config.json, bert_model.ckpt.*, "
                             "vocab.txt, for Google's run_*.py --init_checkpoint)")
    case = parser.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                      help="the vocabulary is uncased (default: guessed from the vocab)")
    case.add_argument("--cased", dest="lowercase", action="store_false")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load a legacy pytorch_model.bin that also holds its "
                             "training script's data (argparse.Namespace, numpy scalars): "
                             "still weights-only, with those data classes allowed (a "
                             "warning is printed); files holding code stay refused")


def run(args: argparse.Namespace) -> int:
    from bertforge.interop.checkpoint import (
        architecture,
        load_state,
        model_for,
        save_google,
        save_pretrained,
    )

    if not args.source or not args.target:
        raise ValueError("convert needs --from DIR and --to DIR (or --to FILE.onnx)")
    if str(args.target).endswith(".onnx"):
        if args.format != "hf":
            raise ValueError("--format google writes a directory, not FILE.onnx")
        return _to_onnx(args.source, args.target)
    if Path(args.target).resolve() == Path(args.source).resolve():
        raise ValueError("--to must differ from --from: converting in place could lose the "
                         "original")
    ckpt = _read(args.source, args.allow_pickle)
    model = model_for(ckpt)
    load_state(model, ckpt, strict=True)
    tokenizer = _tokenizer(Path(args.source), args.lowercase)
    if args.format == "google":
        save_google(model, args.target, tokenizer=tokenizer)
    else:
        save_pretrained(model, args.target, tokenizer=tokenizer)
        copy_sentence_transformers_files(Path(args.source), Path(args.target))
    left = _left_out(model, ckpt)
    if left:
        print(f"bertforge convert: warning: {len(left)} tensors of {args.source} have no place "
              f"in {architecture(model)} and were not written: {', '.join(left[:6])}"
              + (" …" if len(left) > 6 else ""), file=sys.stderr)
    dropped = f"; ignored {len(ckpt.unexpected)} unknown tensors" if ckpt.unexpected else ""
    print(f"converted {ckpt.format} checkpoint {args.source} -> {args.format} {args.target} "
          f"({architecture(model)}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters{dropped})")
    return 0


def _left_out(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """Canonical names of the checkpoint's tensors that ``model`` has no parameter for."""
    from bertforge.interop.checkpoint import canonical_prefix

    prefix = canonical_prefix(model)
    own = {prefix + k for k in model.state_dict()}
    return sorted(k for k in ckpt.state if k not in own)


def copy_sentence_transformers_files(source: Path, target: Path) -> list[Path]:
    """Copy a sentence-transformers directory's own files (``modules.json``, the pooling /
    normalisation module folders it lists, ``sentence_bert_config.json``), which say how
    ``bertforge embed`` pools, normalises and truncates: without them the converted
    model would embed differently from the original. Returns what was copied."""
    import json
    import shutil

    copied = []
    for name in ST_FILES:
        if (source / name).is_file():
            copied.append(Path(shutil.copy2(source / name, target / name)))
    try:
        modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return copied
    for module in modules if isinstance(modules, list) else []:
        folder = str(module.get("path", "")) if isinstance(module, dict) else ""
        if folder and (source / folder).is_dir() and not Path(folder).is_absolute() \
                and ".." not in Path(folder).parts:
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
            copied.append(target / folder)
    return copied


def _read(source: str, allow_pickle: bool) -> Checkpoint:
    """``read_checkpoint``; an unsafe (pickle) load's warning printed as one line."""
    import warnings

    from bertforge.interop.checkpoint import UnsafeLoadWarning, read_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsafeLoadWarning)
        ckpt = read_checkpoint(source, allow_pickle=allow_pickle)
    for w in caught:
        if issubclass(w.category, UnsafeLoadWarning):
            print(f"bertforge convert: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return ckpt


def _to_onnx(source: str, target: str) -> int:
    """The model as ONNX with dynamic batch/sequence axes, checked under onnxruntime."""
    from bertforge.inference.onnx_export import export_onnx

    report = export_onnx(source, target)
    print(f"exported {report.architecture} {source} -> {target} (outputs "
          f"{', '.join(report.outputs)}; max |onnxruntime - torch| = {report.max_abs_diff:.1e})")
    return 0


def _tokenizer(folder: Path, lowercase: bool | None):  # noqa: ANN202 - optional import
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        return None
    from bertforge.tokenization import load_tokenizer
    return load_tokenizer(folder, lowercase=lowercase)
