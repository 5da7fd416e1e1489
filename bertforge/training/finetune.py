"""The fine-tuning loop shared by every task: the paper's recipe plus the usual switches.

Recipe (Devlin et al. 2019, section 4 and appendix A.3): Adam(W) with weight decay 0.01,
peak learning rate from {5e-5, 3e-5, 2e-5}, batch 16 or 32, 2-4 epochs, linear warm-up
over the first 10% of steps then linear decay, dropout 0.1; evaluate on dev after every
epoch and keep the best checkpoint.

Switches, each off by default: layer-wise learning-rate decay (``layer_decay`` < 1),
re-initialising the top ``reinit_layers`` layers, FGM adversarial training on the word
embeddings (``fgm_epsilon`` > 0), early stopping (``patience``), gradient accumulation,
bf16/fp16 autocast, length-grouped batches.

Each run writes into ``OUT``: ``best/`` (Hugging Face-shaped checkpoint with the tokenizer
and the label map), ``metrics.jsonl`` (one JSON object per logged step and per
evaluation), ``eval_results.json`` (the best evaluation's metrics and when it happened),
the task's prediction files for that evaluation, and ``learning_curves.png``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bertforge.model.bert import init_weights
from bertforge.tasks.batching import batch_order, collate, row_length
from bertforge.tasks.common import Row
from bertforge.training.optim import build_optimizer
from bertforge.training.schedules import build_schedule

PRECISIONS = ("fp32", "bf16", "fp16")


class FinetuneError(ValueError):
    """A fine-tuning setting that cannot work; the message names the setting."""


@dataclass
class FinetuneArgs:
    """Hyper-parameters and switches of one run (defaults: the paper's recipe)."""

    lr: float = 2e-5
    batch_size: int = 32
    epochs: float = 3.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # or adam_weight_decay (Google's, no bias correction)
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    seed: int = 42
    precision: str = "fp32"
    eval_batch_size: int = 64
    patience: int | None = None  # early stopping: evaluations without improvement
    layer_decay: float = 1.0
    reinit_layers: int = 0
    fgm_epsilon: float = 0.0
    group_by_length: bool = True
    device: str = "cpu"
    max_steps: int | None = None
    log_every: int = 10
    progress: bool = True
    save_best: bool = True

    def check(self) -> None:
        """Raise FinetuneError naming the first setting that cannot work."""
        positive = {"lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                    "grad_accum": self.grad_accum, "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if not value > 0:
                raise FinetuneError(f"{name} must be > 0, got {value}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise FinetuneError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise FinetuneError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.reinit_layers < 0 or self.fgm_epsilon < 0:
            raise FinetuneError("reinit_layers and fgm_epsilon must be >= 0")


@dataclass
class EvalResult:
    """Metrics (fractions or the task's official units) and the task's predictions."""

    metrics: dict[str, float]
    predictions: Any = None


@dataclass
class FinetuneTask:
    """What the loop needs from a task (see ``finetune_tasks.py``).

    ``evaluate(model, predict)`` scores the dev set; ``predict(rows)`` runs the model over
    rows and returns per-row numpy outputs (see :func:`predict_rows`).
    ``write_predictions(out_dir, result)`` writes the task's prediction files.
    """

    name: str
    model: nn.Module
    train_rows: list[Row]
    evaluate: Callable[[nn.Module, Callable[[list[Row]], dict[str, list[np.ndarray]]]],
                       EvalResult]
    main_metric: str
    pad_id: int = 0
    tokenizer: Any = None
    write_predictions: Callable[[Path, EvalResult], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ model surgery
def reinit_top_layers(model: nn.Module, count: int) -> None:
    """Re-initialise the top ``count`` encoder layers (and the pooler) as BERT initialises."""
    if count <= 0:
        return
    bert = model.bert
    if count > len(bert.layers):
        raise FinetuneError(f"reinit_layers={count} but the model has {len(bert.layers)} layers")
    std = bert.config.initializer_range
    for layer in bert.layers[-count:]:
        layer.apply(lambda m: init_weights(m, std))
    if bert.pooler is not None:
        bert.pooler.apply(lambda m: init_weights(m, std))


def layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, L + 1 for the pooler and the head."""
    if name.startswith("bert.embeddings."):
        return 0
    if name.startswith("bert.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def apply_layer_decay(optimizer: torch.optim.Optimizer, model: nn.Module, decay: float) -> None:
    """Split every parameter group by depth; depth d gets ``lr * decay ** (L + 1 - d)``.
    Call before the first step (and before building the schedule)."""
    if decay >= 1.0:
        return
    num_layers = len(model.bert.layers)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = list(optimizer.param_groups)
    optimizer.param_groups.clear()
    for group in groups:
        by_depth: dict[int, list[torch.Tensor]] = {}
        for p in group["params"]:
            by_depth.setdefault(layer_depth(names[id(p)], num_layers), []).append(p)
        for depth, params in sorted(by_depth.items()):
            scale = decay ** (num_layers + 1 - depth)
            new = {k: v for k, v in group.items() if k not in ("params", "names")}
            optimizer.add_param_group({**new, "params": params, "lr": group["lr"] * scale})


# ------------------------------------------------------------------ batches
def _autocast(device: str, precision: str) -> Any:
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _trim(name: str, array: np.ndarray, length: int) -> np.ndarray:
    """Drop padding from one row's output: token-level outputs are cut to ``length``."""
    if name in ("start_logits", "end_logits"):
        return array[:length]
    return array[:length] if array.ndim == 2 else array  # [S, K] token logits


@torch.no_grad()
def predict_rows(model: nn.Module, rows: list[Row], batch_size: int = 64, device: str = "cpu",
                 pad_id: int = 0, precision: str = "fp32") -> dict[str, list[np.ndarray]]:
    """Run ``model`` over ``rows`` (longest first, to waste little padding) and return, per
    output name (``logits``, ``start_logits``, ``end_logits``), one float32 array per row in
    the rows' order: [K] (sequence), [C] (choices), [S_i, K] (tokens), [S_i] (spans)."""
    was_training = model.training
    model.eval()
    lengths = [row_length(r) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    out: dict[str, list[np.ndarray | None]] = {}
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collate([_inputs_only(rows[i]) for i in index], pad_id)
        with _autocast(device, precision):
            result = model(**_to(batch, device))
        for name in ("logits", "start_logits", "end_logits"):
            value = getattr(result, name, None)
            if value is None:
                continue
            arrays = out.setdefault(name, [None] * len(rows))
            for j, i in enumerate(index):
                arrays[i] = _trim(name, value[j].float().cpu().numpy(), lengths[i])
    model.train(was_training)
    return out  # type: ignore[return-value]


def _inputs_only(row: Row) -> Row:
    return {k: row[k] for k in ("input_ids", "token_type_ids", "attention_mask") if k in row}


# ------------------------------------------------------------------ FGM
def fgm_step(model: nn.Module, batch: dict[str, torch.Tensor], epsilon: float, scale: float,
             autocast: Any) -> None:
    """Fast Gradient Method (Miyato et al. 2017): add ``epsilon * g / ||g||`` to the word
    embeddings, accumulate the adversarial loss's gradient, restore the embeddings."""
    weight = model.bert.embeddings.word_embeddings.weight
    if weight.grad is None:
        return
    norm = weight.grad.norm()
    if not torch.isfinite(norm) or norm == 0:
        return
    delta = epsilon * weight.grad / norm
    weight.data.add_(delta)
    with autocast:
        loss = model(**batch).loss
    (loss * scale).backward()
    weight.data.sub_(delta)


# ------------------------------------------------------------------ logging
class RunLog:
    """``metrics.jsonl`` writer that keeps the records for the plot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        path.write_text("", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")


def plot_learning_curves(records: list[dict[str, Any]], main_metric: str, path: Path) -> bool:
    """Training loss by step and the dev metric by step into a PNG. False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax1.set(xlabel="optimizer step", ylabel="training loss", title="training loss")
    ax2.plot([r["step"] for r in evals], [r["eval"].get(main_metric, float("nan"))
                                           for r in evals], marker="o")
    ax2.set(xlabel="optimizer step", ylabel=main_metric, title=f"dev {main_metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ the loop
@dataclass
class _State:
    step: int = 0
    best: float = -math.inf
    best_result: EvalResult | None = None
    best_epoch: float = 0.0
    best_step: int = 0
    evals_since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _steps(args: FinetuneArgs, n_rows: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps)."""
    per_epoch = max(1, math.ceil(math.ceil(n_rows / args.batch_size) / args.grad_accum))
    total = math.ceil(args.epochs * per_epoch)
    if args.max_steps:
        total = min(total, args.max_steps)
    return per_epoch, max(1, total)


def _seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _epoch_batches(task: FinetuneTask, args: FinetuneArgs, rng: np.random.Generator
                   ) -> Iterator[dict[str, torch.Tensor]]:
    lengths = [row_length(r) for r in task.train_rows]
    for index in batch_order(lengths, args.batch_size, rng, args.group_by_length):
        yield collate([task.train_rows[i] for i in index], task.pad_id)


def finetune(task: FinetuneTask, args: FinetuneArgs, out_dir: str | Path) -> dict[str, Any]:
    """Train ``task.model`` on ``task.train_rows``, evaluate after every epoch, keep the best.
    Returns (and writes to ``OUT/eval_results.json``) the best evaluation's metrics with
    ``best_epoch``, ``best_step``, ``train_seconds`` and the arguments."""
    args.check()
    if not task.train_rows:
        raise FinetuneError(f"{task.name}: no training examples")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = _seed(args.seed)
    model = task.model.to(args.device)
    reinit_top_layers(model, args.reinit_layers)
    optimizer = build_optimizer(model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
    apply_layer_decay(optimizer, model, args.layer_decay)
    per_epoch, total = _steps(args, len(task.train_rows))
    schedule = build_schedule(optimizer, args.schedule, int(args.warmup_ratio * total), total)
    log = RunLog(out / "metrics.jsonl")
    state, started = _State(), time.perf_counter()
    epochs = math.ceil(total / per_epoch)
    bar = tqdm(total=total, desc=f"fine-tune {task.name}", unit="step",
               disable=not args.progress, dynamic_ncols=True)
    for epoch in range(epochs):
        _train_epoch(task, args, model, optimizer, schedule, rng, state, log, bar, total)
        stop = _evaluate(task, args, model, out, state, log, epoch + 1)
        if stop or state.step >= total:
            break
    bar.close()
    return _finish(task, args, out, state, log, time.perf_counter() - started)


def _train_epoch(task: FinetuneTask, args: FinetuneArgs, model: nn.Module,
                 optimizer: torch.optim.Optimizer, schedule: Any, rng: np.random.Generator,
                 state: _State, log: RunLog, bar: Any, total: int) -> None:
    model.train()
    scaler = torch.amp.GradScaler(enabled=args.precision == "fp16")
    running, micro = [], 0
    for batch in _epoch_batches(task, args, rng):
        batch = _to(batch, args.device)
        autocast = _autocast(args.device, args.precision)
        with autocast:
            loss = model(**batch).loss
        scaler.scale(loss / args.grad_accum).backward()
        if args.fgm_epsilon > 0:
            fgm_step(model, batch, args.fgm_epsilon, 1.0 / args.grad_accum,
                     _autocast(args.device, args.precision))
        running.append(float(loss.detach()))
        micro += 1
        if micro % args.grad_accum:
            continue
        _optimizer_step(model, optimizer, schedule, scaler, args.max_grad_norm)
        state.step += 1
        bar.update(1)
        if state.step % args.log_every == 0 or state.step == total:
            _log_step(log, bar, state.step, running, schedule, state.step / max(1, total))
            running = []
        if state.step >= total:
            return


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                    scaler: torch.amp.GradScaler, max_grad_norm: float) -> None:
    scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def _log_step(log: RunLog, bar: Any, step: int, losses: list[float], schedule: Any,
              progress: float) -> None:
    loss = float(np.mean(losses)) if losses else float("nan")
    lr = schedule.get_last_lr()[0]
    log.write({"step": step, "loss": loss, "lr": lr, "progress": round(progress, 4)})
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")


def _evaluate(task: FinetuneTask, args: FinetuneArgs, model: nn.Module, out: Path,
              state: _State, log: RunLog, epoch: int) -> bool:
    """Score dev; save the checkpoint and predictions when best. True = stop early."""
    def predict(rows: list[Row]) -> dict[str, list[np.ndarray]]:
        return predict_rows(model, rows, args.eval_batch_size, args.device, task.pad_id,
                            args.precision)

    result = task.evaluate(model, predict)
    score = float(result.metrics[task.main_metric])
    log.write({"step": state.step, "epoch": epoch, "eval": result.metrics})
    if score > state.best:
        state.best, state.best_result = score, result
        state.best_epoch, state.best_step, state.evals_since_best = epoch, state.step, 0
        _save_best(task, args, model, out, result)
    else:
        state.evals_since_best += 1
    return args.patience is not None and state.evals_since_best >= args.patience


def _save_best(task: FinetuneTask, args: FinetuneArgs, model: nn.Module, out: Path,
               result: EvalResult) -> None:
    if args.save_best:
        model.save_pretrained(str(out / "best"), tokenizer=task.tokenizer)
    if task.write_predictions is not None:
        task.write_predictions(out, result)


def _finish(task: FinetuneTask, args: FinetuneArgs, out: Path, state: _State, log: RunLog,
            seconds: float) -> dict[str, Any]:
    best = state.best_result.metrics if state.best_result else {}
    summary = {"task": task.name, **best, "main_metric": task.main_metric,
               "best_epoch": state.best_epoch, "best_step": state.best_step,
               "steps": state.step, "train_seconds": round(seconds, 2),
               "train_examples": len(task.train_rows), "args": asdict(args)}
    (out / "eval_results.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    plot_learning_curves(log.records, task.main_metric, out / "learning_curves.png")
    return summary
