"""``bertforge convert``: any supported checkpoint -> a Hugging Face-shaped directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bertforge.interop.checkpoint import Checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="DIR", default=None,
                        help="a Google TF checkpoint directory (bert_config.json, "
                             "bert_model.ckpt.*, vocab.txt) or a Hugging Face directory")
    parser.add_argument("--to", dest="target", metavar="DIR", default=None,
                        help="output directory: config.json, model.safetensors, vocab.txt, "
                             "tokenizer.json; or FILE.onnx for ONNX (checked under "
                             "onnxruntime, as 'bertforge export')")
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
    from bertforge.interop.checkpoint import load_state, save_pretrained
    from bertforge.model import BertForPreTraining, BertModel

    if not args.source or not args.target:
        raise ValueError("convert needs --from DIR and --to DIR (or --to FILE.onnx)")
    if str(args.target).endswith(".onnx"):
        return _to_onnx(args.source, args.target)
    if Path(args.target).resolve() == Path(args.source).resolve():
        raise ValueError("--to must differ from --from: converting in place could lose the "
                         "original")
    ckpt = _read(args.source, args.allow_pickle)
    has_heads = any(k.startswith(("mlm.", "nsp.")) for k in ckpt.state)
    model = (BertForPreTraining if has_heads else BertModel)(ckpt.config)
    load_state(model, ckpt, strict=True)
    tokenizer = _tokenizer(Path(args.source), args.lowercase)
    save_pretrained(model, args.target, tokenizer=tokenizer)
    dropped = f"; ignored {len(ckpt.unexpected)} unknown tensors" if ckpt.unexpected else ""
    print(f"converted {ckpt.format} checkpoint {args.source} -> {args.target} "
          f"({type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters{dropped})")
    return 0


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
