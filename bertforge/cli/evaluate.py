"""``bertforge evaluate TASK --model FINETUNED --out DIR``: score a fine-tuned model on dev.

Takes the same data options as ``bertforge finetune`` (no training file needed: the label
map comes from the model's ``config.json``). Writes ``eval_results.json`` and the task's
prediction files into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bertforge.cli.finetune import add_data_arguments, need, task_factory
from bertforge.inference.common import resolve_device
from bertforge.training.finetune import predict_rows
from bertforge.training.precision import PRECISIONS, bf16_norms, resolve_precision


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA if any)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="bf16/fp16 autocast; auto: bf16 on a CUDA device with bf16, "
                             "else fp32")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    need(args, "model", "out")
    started = time.perf_counter()
    device = str(resolve_device(args.device))
    precision = resolve_precision(args.precision, device)
    task = task_factory(args, training=False)()
    model = task.model.to(device).eval()
    if precision == "bf16":
        bf16_norms(model)

    def predict(rows: list) -> dict:
        return predict_rows(model, rows, args.batch_size, device, task.pad_id, precision,
                            progress=not args.quiet)

    result = task.evaluate(model, predict)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"task": task.name, "model": str(args.model), **result.metrics,
               "seconds": round(time.perf_counter() - started, 2)}
    (out / "eval_results.json").write_text(json.dumps(summary, indent=2) + "\n",
                                           encoding="utf-8")
    if task.write_predictions is not None:
        task.write_predictions(out, result)
    print(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                   if isinstance(v, float)))
    return 0
