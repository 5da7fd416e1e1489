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

With ``save_every`` it also writes resumable checkpoints ``OUT/checkpoint-STEP`` (atomic,
checksummed: see ``checkpointing.py``) every that many optimizer steps and after every
evaluation: weights, optimizer, schedule, loss scaler, every random generator, the data
position (epoch, batches done, the batch-order generator at the epoch's start), pending
gradients, the best result so far and the length of ``metrics.jsonl``. ``resume`` continues
from the newest valid one; on a CPU (``deterministic``) a run killed at any moment and
resumed ends with the same bits as one never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import sys
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
from bertforge.training import checkpointing as ckpt
from bertforge.training.optim import build_optimizer, clip_grad_norm
from bertforge.training.precision import bf16_norms
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
    save_every: int | None = None  # optimizer steps between resumable checkpoints
    keep_last: int = 2  # resumable checkpoints kept
    resume: bool = False  # continue from the newest valid checkpoint in OUT
    deterministic: bool = False  # deterministic kernels (bit-exact resume on a CPU)

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
        if self.save_every is not None and self.save_every < 1:
            raise FinetuneError(f"save_every must be >= 1, got {self.save_every}")
        if self.keep_last < 1:
            raise FinetuneError(f"keep_last must be >= 1, got {self.keep_last}")


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
                 pad_id: int = 0, precision: str = "fp32", progress: bool = False,
                 desc: str = "evaluate") -> dict[str, list[np.ndarray]]:
    """Run ``model`` over ``rows`` (longest first, to waste little padding) and return, per
    output name (``logits``, ``start_logits``, ``end_logits``), one float32 array per row in
    the rows' order: [K] (sequence), [C] (choices), [S_i, K] (tokens), [S_i] (spans).
    ``progress`` shows a bar of rows done on stderr, named ``desc`` (a SQuAD dev set
    takes minutes)."""
    was_training = model.training
    model.eval()
    lengths = [row_length(r) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    out: dict[str, list[np.ndarray | None]] = {}
    with tqdm(total=len(rows), desc=desc, unit="row", leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch_size):
            _predict_batch(model, rows, order[start:start + batch_size], lengths, out,
                           pad_id, device, precision)
            bar.update(min(batch_size, len(order) - start))
    model.train(was_training)
    return out  # type: ignore[return-value]


def _predict_batch(model: nn.Module, rows: list[Row], index: list[int], lengths: list[int],
                   out: dict[str, list[np.ndarray | None]], pad_id: int, device: str,
                   precision: str) -> None:
    """One batch of ``predict_rows``: the rows ``index``, outputs stored into ``out``."""
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


def _inputs_only(row: Row) -> Row:
    return {k: row[k] for k in ("input_ids", "token_type_ids", "attention_mask") if k in row}


# ------------------------------------------------------------------ FGM
def fgm_step(model: nn.Module, batch: dict[str, torch.Tensor], epsilon: float, scale: float,
             autocast: Any, prior: torch.Tensor | None = None,
             scaler: torch.amp.GradScaler | None = None) -> None:
    """Fast Gradient Method (Miyato et al. 2017): add ``epsilon * g / ||g||`` to the word
    embeddings, accumulate the adversarial loss's gradient (times ``scale``, through
    ``scaler`` as the clean loss went), restore the embeddings to the bit.

    ``g`` is this micro-batch's own gradient: the word embeddings' gradient less
    ``prior``, what it held before this micro-batch's backward (gradient accumulation).
    Only the rows of the tokens in the batch have a gradient; only they move and are
    copied back (``(w + d) - d`` is not ``w`` in floating point)."""
    weight = model.bert.embeddings.word_embeddings.weight
    if weight.grad is None:
        return
    grad = weight.grad if prior is None else weight.grad - prior
    norm = grad.norm()
    if not torch.isfinite(norm) or norm == 0:
        return
    rows = grad.abs().sum(dim=1).nonzero().squeeze(1)  # [R] ids of the batch's tokens
    saved = weight.data[rows].clone()  # [R, H]
    weight.data[rows] += grad[rows] * (epsilon / norm)
    try:
        with autocast:
            loss = model(**batch).loss * scale
        (scaler.scale(loss) if scaler is not None else loss).backward()
    finally:
        weight.data[rows] = saved


def _word_grad(model: nn.Module) -> torch.Tensor | None:
    """A copy of the word embeddings' pending gradient (None when there is none)."""
    grad = model.bert.embeddings.word_embeddings.weight.grad
    return None if grad is None else grad.clone()


# ------------------------------------------------------------------ logging
class RunLog:
    """``metrics.jsonl`` writer that keeps the records for the plot. ``keep``: continue a
    resumed run's log after its first ``keep`` records (later ones are dropped)."""

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        lines = path.read_text(encoding="utf-8").splitlines()[:keep] if keep else []
        self.records = [json.loads(line) for line in lines]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)

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
    """A run's counters and data position; all of it (but ``best_result``'s predictions)
    goes into resumable checkpoints."""

    step: int = 0
    best: float = -math.inf
    best_result: EvalResult | None = None
    best_epoch: float = 0.0
    best_step: int = 0
    evals_since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0  # the epoch being trained (0-based)
    batch: int = 0  # its micro-batches done
    epoch_rng: dict[str, Any] = field(default_factory=dict)  # batch-order generator at its start
    running: list[float] = field(default_factory=list)  # losses since the last log record
    log_lines: int = 0  # records in metrics.jsonl
    seconds: float = 0.0  # training time of earlier processes of this run
    done: bool = False  # trained and evaluated to the end


@dataclass
class _Run:
    """What one run trains with, built once (and restored by a resume)."""

    task: FinetuneTask
    args: FinetuneArgs
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: torch.amp.GradScaler
    rng: np.random.Generator  # batch orders
    out: Path
    per_epoch: int
    total: int
    log: RunLog | None = None
    bar: Any = None
    started: float = field(default_factory=time.perf_counter)


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


def _epoch_batches(task: FinetuneTask, args: FinetuneArgs, rng: np.random.Generator,
                   skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """This epoch's batches (the order drawn from ``rng``), the first ``skip`` left out."""
    lengths = [row_length(r) for r in task.train_rows]
    for index in batch_order(lengths, args.batch_size, rng, args.group_by_length)[skip:]:
        yield collate([task.train_rows[i] for i in index], task.pad_id)


def finetune(task: FinetuneTask, args: FinetuneArgs, out_dir: str | Path) -> dict[str, Any]:
    """Train ``task.model`` on ``task.train_rows``, evaluate after every epoch, keep the best.
    Returns (and writes to ``OUT/eval_results.json``) the best evaluation's metrics with
    ``best_epoch``, ``best_step``, ``train_seconds`` and the arguments. With
    ``args.save_every`` it writes resumable checkpoints; ``args.resume`` continues the run
    from the newest valid one in ``out_dir``."""
    args.check()
    if not task.train_rows:
        raise FinetuneError(f"{task.name}: no training examples")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume_dir = _resume_dir(out, args)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    run = _build(task, args, out)
    state = _State(epoch_rng=run.rng.bit_generator.state)
    if resume_dir is not None:
        state = _restore(run, resume_dir)
    run.log = RunLog(out / "metrics.jsonl", keep=state.log_lines)
    run.bar = tqdm(total=run.total, initial=state.step, desc=f"fine-tune {task.name}",
                   unit="step", disable=not args.progress, dynamic_ncols=True)
    epochs = math.ceil(run.total / run.per_epoch)
    while not state.done:
        _train_epoch(run, state)
        stop = _evaluate(run, state, state.epoch + 1)
        state.epoch, state.batch, state.running = state.epoch + 1, 0, []
        state.epoch_rng = run.rng.bit_generator.state
        state.done = stop or state.step >= run.total or state.epoch >= epochs
        if args.save_every:
            _save(run, state)
    run.bar.close()
    return _finish(run, state)


def initialise_new_weights(model: nn.Module) -> list[str]:
    """Give the weights the checkpoint lacked (``model.new_weights``, set by
    ``from_pretrained``: a new task head) BERT's initialisation again, from torch's
    generator as it is now. ``finetune`` calls this right after seeding, so that a new
    head's initial weights follow ``args.seed`` however the model was built. Returns the
    names of the modules re-initialised."""
    new = set(getattr(model, "new_weights", ()))
    config = getattr(model, "config", None)
    if not new or config is None:
        return []
    done = []
    for name, module in model.named_modules():
        own = [f"{name}.{n}" if name else n for n, _ in module.named_parameters(recurse=False)]
        if not own or not all(k in new for k in own):
            continue
        if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
            init_weights(module, config.initializer_range)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            continue
        done.append(name)
    return done


def _build(task: FinetuneTask, args: FinetuneArgs, out: Path) -> _Run:
    """Model, optimizer (with layer decay), schedule and scaler as a fresh run starts."""
    rng = _seed(args.seed)
    with torch.no_grad():
        initialise_new_weights(task.model)
    model = task.model.to(args.device)
    if args.precision == "bf16":
        bf16_norms(model)
    _check_trainable(model, args)
    reinit_top_layers(model, args.reinit_layers)
    optimizer = build_optimizer(model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
    apply_layer_decay(optimizer, model, args.layer_decay)
    per_epoch, total = _steps(args, len(task.train_rows))
    schedule = build_schedule(optimizer, args.schedule, int(args.warmup_ratio * total), total)
    scaler = torch.amp.GradScaler(torch.device(args.device).type,
                                  enabled=args.precision == "fp16")
    return _Run(task, args, model, optimizer, schedule, scaler, rng, out, per_epoch, total)


def _check_trainable(model: nn.Module, args: FinetuneArgs) -> None:
    """FGM and re-initialisation act on the encoder: refuse a frozen one (the feature-based
    tagger), where FGM would do nothing and re-initialised layers would stay random."""
    bert = model.bert
    if args.fgm_epsilon > 0 and not bert.embeddings.word_embeddings.weight.requires_grad:
        raise FinetuneError("fgm_epsilon needs trainable word embeddings, but this model's "
                            "encoder is frozen (feature-based); leave --fgm-epsilon out")
    top = bert.layers[-args.reinit_layers:] if args.reinit_layers > 0 else []
    if any(not p.requires_grad for layer in top for p in layer.parameters()):
        raise FinetuneError("reinit_layers would re-initialise layers that are frozen "
                            "(feature-based) and leave them random; leave --reinit-layers out")


def _train_epoch(run: _Run, state: _State) -> None:
    """Train from the state's position to the end of its epoch (or the last step). An
    epoch whose micro-batches do not divide by ``grad_accum`` ends with one update from the
    last, incomplete group (their mean gradient), as :func:`_steps` counts it; nothing is
    carried into the next epoch."""
    args = run.args
    run.model.train()
    run.rng.bit_generator.state = state.epoch_rng  # a no-op unless resuming mid-epoch
    micro = state.batch
    for batch in _epoch_batches(run.task, args, run.rng, skip=state.batch):
        if state.step >= run.total:
            return
        state.running.append(_backward(run, _to(batch, args.device)))
        micro += 1
        if micro % args.grad_accum == 0:
            _update(run, state, micro)
    pending = micro % args.grad_accum
    if pending and state.step < run.total:
        for param in run.model.parameters():
            if param.grad is not None:
                param.grad.mul_(args.grad_accum / pending)
        # counted up to a whole group, so that a resume from here does not update again
        _update(run, state, micro + args.grad_accum - pending)


def _backward(run: _Run, batch: dict[str, torch.Tensor]) -> float:
    """One micro-batch's loss / ``grad_accum`` backward (and FGM's); returns the loss."""
    args, model = run.args, run.model
    prior = _word_grad(model) if args.fgm_epsilon > 0 else None
    with _autocast(args.device, args.precision):
        loss = model(**batch).loss
    run.scaler.scale(loss / args.grad_accum).backward()
    if args.fgm_epsilon > 0:
        fgm_step(model, batch, args.fgm_epsilon, 1.0 / args.grad_accum,
                 _autocast(args.device, args.precision), prior, run.scaler)
    return float(loss.detach())


def _update(run: _Run, state: _State, micro: int) -> None:
    """The optimizer step after ``micro`` micro-batches of the epoch; logs and saves."""
    args = run.args
    _optimizer_step(run.model, run.optimizer, run.schedule, run.scaler, args.max_grad_norm)
    state.step, state.batch = state.step + 1, micro
    run.bar.update(1)
    if state.step % args.log_every == 0 or state.step == run.total:
        _log_step(run.log, run.bar, state.step, state.running, run.schedule,
                  state.step / max(1, run.total))
        state.running = []
    if args.save_every and state.step % args.save_every == 0:
        _save(run, state)


# ------------------------------------------------------------------ resumable checkpoints
# FinetuneArgs fields that may differ between a run and its resumption
_FREE_ARGS = ("device", "progress", "save_best", "save_every", "keep_last", "resume",
              "log_every", "eval_batch_size", "deterministic")


def _resume_dir(out: Path, args: FinetuneArgs) -> Path | None:
    """The checkpoint to continue from (None: start afresh)."""
    if not args.resume:
        if ckpt.list_checkpoints(out):
            raise FinetuneError(f"{out}: holds checkpoints of an earlier run; pass --resume to "
                                "continue it or choose a new --out")
        return None
    found = ckpt.find_latest(out, warn=_say)
    if found is None:
        _say(f"--resume: no valid checkpoint in {out}; starting from step 0")
    return found


def _say(message: str) -> None:
    print(f"bertforge finetune: {message}", file=sys.stderr, flush=True)


def _split_weights(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The module saved as the checkpoint's ``model.safetensors`` (Hugging Face names), and
    the tensors no Hugging Face name exists for (the feature-based tagger's BiLSTM head),
    which go into the training state."""
    from bertforge.interop.checkpoint import CheckpointError, to_hf_state

    try:
        to_hf_state(model)
        return model, {}
    except CheckpointError:
        return model.bert, {k: v for k, v in model.state_dict().items()
                            if not k.startswith("bert.")}


def _state_fields(run: _Run, state: _State) -> str:
    """The state's counters as JSON (plain values, whatever types the metrics have)."""
    fields = {k: getattr(state, k) for k in _State.__dataclass_fields__ if k != "best_result"}
    fields["best_metrics"] = state.best_result.metrics if state.best_result else None
    fields["seconds"] = state.seconds + time.perf_counter() - run.started
    return json.dumps(fields, default=float)


def _save(run: _Run, state: _State) -> None:
    """Write ``OUT/checkpoint-STEP``; a failed write is reported and training goes on
    (earlier checkpoints are intact)."""
    state.log_lines = len(run.log.records)
    weights, head = _split_weights(run.model)
    training_state = {
        "finetune": _state_fields(run, state),
        "optimizer": run.optimizer.state_dict(), "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "rng": ckpt.rng_state(), "head": head,
        "grads": {n: p.grad for n, p in run.model.named_parameters() if p.grad is not None},
        "args": json.dumps(_run_args(run)),
    }
    try:
        ckpt.save_checkpoint(run.out, state.step, weights, training_state,
                             keep_last=run.args.keep_last)
    except ckpt.CheckpointWriteError as err:
        _say(f"warning: {err}")


def _run_args(run: _Run) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    fixed = {k: v for k, v in asdict(run.args).items() if k not in _FREE_ARGS}
    return {**fixed, "task": run.task.name, "train_examples": len(run.task.train_rows)}


def _restore(run: _Run, folder: Path) -> _State:
    """Weights, optimizer, schedule, scaler, generators and counters from ``folder``."""
    saved = ckpt.load_training_state(folder, verified=True)
    _check_same_run(json.loads(saved["args"]), json.loads(json.dumps(_run_args(run))), folder)
    weights, _ = _split_weights(run.model)
    ckpt.load_model_weights(weights, folder)
    if saved["head"]:
        run.model.load_state_dict({**run.model.state_dict(), **saved["head"]})
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["schedule"])
    if saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    ckpt.set_rng_state(saved["rng"])
    for name, param in run.model.named_parameters():
        grad = saved["grads"].get(name)
        param.grad = None if grad is None else grad.to(param.device)
    fields = json.loads(saved["finetune"])
    metrics = fields.pop("best_metrics")
    state = _State(**fields)
    state.best_result = EvalResult(metrics) if metrics is not None else None
    _say(f"resumed from {folder} at step {state.step}")
    return state


def _check_same_run(saved: dict[str, Any], now: dict[str, Any], folder: Path) -> None:
    changed = [f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in sorted(set(saved) | set(now))
               if saved.get(k) != now.get(k)]
    if changed:
        raise FinetuneError(f"{folder}: the run being resumed had other settings: "
                            f"{', '.join(changed)}; resume with the same data and settings, or "
                            "choose a new --out")


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                    scaler: torch.amp.GradScaler, max_grad_norm: float) -> None:
    scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        clip_grad_norm(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def _log_step(log: RunLog, bar: Any, step: int, losses: list[float], schedule: Any,
              progress: float) -> None:
    loss = float(np.mean(losses)) if losses else float("nan")
    lr = max(schedule.get_last_lr())  # the peak group's (the head's under layer decay)
    log.write({"step": step, "loss": loss, "lr": lr, "progress": round(progress, 4)})
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")


def _evaluate(run: _Run, state: _State, epoch: int) -> bool:
    """Score dev; save the checkpoint and predictions when best. True = stop early."""
    task, args, model, out, log = run.task, run.args, run.model, run.out, run.log

    def predict(rows: list[Row]) -> dict[str, list[np.ndarray]]:
        return predict_rows(model, rows, args.eval_batch_size, args.device, task.pad_id,
                            args.precision, progress=args.progress)

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


def _finish(run: _Run, state: _State) -> dict[str, Any]:
    task, args, out, log = run.task, run.args, run.out, run.log
    seconds = state.seconds + time.perf_counter() - run.started
    best = state.best_result.metrics if state.best_result else {}
    summary = {"task": task.name, **best, "main_metric": task.main_metric,
               "best_epoch": state.best_epoch, "best_step": state.best_step,
               "steps": state.step, "train_seconds": round(seconds, 2),
               "train_examples": len(task.train_rows), "args": asdict(args)}
    (out / "eval_results.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    plot_learning_curves(log.records, task.main_metric, out / "learning_curves.png")
    return summary
