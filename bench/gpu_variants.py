"""Ways to run the unpadded attention on a GPU, timed against each other and transformers.

Real batches vary in width, and every new width is a new attention shape. This times, on
``bertforge bench``'s batches and steps, ours (and transformers beside it, the models
taking turns) under each variant, twice over the same batches: the first pass meets each
shape for the first time (as a short run does), the second has met them all (as a long
run has). Variants: ``default`` (ours unpadded, as the CPU runs it); ``no-cudnn``
(unpadded, SDPA's cuDNN backend off, for both models); ``width64`` (unpadded, our
attention width rounded up to a multiple of 64: few shapes); ``padded`` (ours without
unpadding: what CUDA runs since this measurement, see bench/RESULTS.md).

    python bench/gpu_variants.py --data-dir gpu_data \
        --vocab gpu_data/vocab/bert_uncased_en_vocab.txt pretrain:512:64 inference:128:128
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import torch

import bertforge.model.bert as bert_module
from bertforge.cli.bench import _step_fns, make_batches, model_pair, timed_interleaved
from bertforge.model import BertForPreTraining
from bertforge.tokenization import load_tokenizer


def widened(unpadded: bert_module.Unpadded, multiple: int) -> bert_module.Unpadded:
    """The same layout with its attention width W rounded up to a multiple of ``multiple``
    (more padded slots per row, fewer distinct attention shapes)."""
    width = -(-unpadded.width // multiple) * multiple
    if width == unpadded.width:
        return unpadded
    seq, pos = unpadded.slot // unpadded.width, unpadded.slot % unpadded.width
    real = torch.zeros(unpadded.rows, width, dtype=torch.bool, device=unpadded.slot.device)
    real.view(-1)[seq * width + pos] = True  # [R, W]: which slots hold a token
    return dataclasses.replace(unpadded, slot=seq * width + pos, width=width,
                               key_mask=real[:, None, None, :])


@contextlib.contextmanager
def variant(name: str, ours: BertForPreTraining) -> Iterator[None]:
    cudnn = torch.backends.cuda.cudnn_sdp_enabled()
    devices = bert_module.UNPAD_DEVICES
    original = bert_module.Unpadded.__dict__["from_mask"]  # the classmethod itself
    from_mask = bert_module.Unpadded.from_mask
    try:
        bert_module.UNPAD_DEVICES = ("cpu", "cuda")
        if name == "no-cudnn":
            torch.backends.cuda.enable_cudnn_sdp(False)
        elif name == "width64":
            bert_module.Unpadded.from_mask = classmethod(
                lambda cls, *a, **k: widened(from_mask(*a, **k), 64))
        elif name == "padded":
            ours.bert.unpad = False
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        bert_module.Unpadded.from_mask = original
        ours.bert.unpad = True
        bert_module.UNPAD_DEVICES = devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="mode:seq_len:batch_size")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default="gpu_data")
    parser.add_argument("--vocab", default="gpu_data/vocab/bert_uncased_en_vocab.txt")
    parser.add_argument("--variants", default="default,no-cudnn,width64,padded")
    args = parser.parse_args()

    tok = load_tokenizer(Path(args.vocab))
    kind = args.device.split(":")[0]

    def autocast():  # noqa: ANN202
        return torch.autocast(kind, dtype=torch.bfloat16)

    for run in args.runs:
        mode, seq_len, batch_size = run.split(":")[0], *map(int, run.split(":")[1:])
        ours, theirs = model_pair(args.preset, tok.vocab_size, seq_len, args.device,
                                  training=mode != "inference")
        batches = make_batches(tok, mode, seq_len, batch_size, args.steps, 0,
                               Path(args.data_dir))
        batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        widths = sorted({b["attention_mask"].shape[1] for b in batches})
        steps = dict(zip(("ours", "theirs"), _step_fns(mode, ours, theirs, args.device),
                         strict=True))
        for name in args.variants.split(","):
            with variant(name, ours):
                row = {"run": run, "variant": name, "widths": len(widths)}
                for when in ("cold", "warm"):  # first meeting of each shape, then again
                    secs = timed_interleaved(steps, batches, 0, args.device, autocast)
                    row.update({f"{when}_{k}_tok_s": round(real / v) for k, v in secs.items()})
                    row[f"{when}_ratio"] = round(secs["theirs"] / secs["ours"], 2)
                print(json.dumps(row), flush=True)
        del ours, theirs, steps, batches
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
