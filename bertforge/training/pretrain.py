"""The pre-training loop: ``pretrain(PretrainConfig)`` trains ``BertForPreTraining``.

One optimiser step: draw this process's micro-batches (``BatchStream``), collate them
(dynamic masks from the collator's generator), count the global predictions, then
forward/backward each micro-batch with its summed loss divided by those counts,
check the loss is finite, clip the global gradient norm, step optimiser and schedule.
The host collates the next step's batches while the device computes this one's.

Everything a step depends on is restorable from a checkpoint: weights, optimiser,
schedule, loss scaler, the data position, the collator's generator, and the python,
numpy and torch generators (dropout). With ``deterministic`` on a CPU, a run killed at
any moment and resumed from its last checkpoint ends with the same bits as one never
interrupted.

Under ``torchrun`` the model is replicated with DDP, or with ``fsdp`` sharded with FSDP2
(``distributed.shard_model``): each process then holds 1/W of the weights, gradients and
optimiser state. Checkpoints are the same either way (full weights, full optimiser state),
so a run can resume with the other strategy or another number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertforge.config import BertConfig, preset
from bertforge.model import BertForPreTraining
from bertforge.model.init import initial_model
from bertforge.training import checkpointing as ckpt
from bertforge.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_flag,
    broadcast_value,
    full_model_state,
    full_optimizer_state,
    gather_objects,
    init_distributed,
    load_optimizer_state,
    local_value,
    shard_model,
    shutdown,
)
from bertforge.training.optim import build_optimizer, clip_grad_norm
from bertforge.training.precision import bf16_norms, resolve_precision
from bertforge.training.pretrain_config import PretrainConfig, PretrainConfigError
from bertforge.training.pretrain_data import (
    BatchStream,
    build_collator,
    check_data,
    eval_batches,
    open_shards,
)
from bertforge.training.pretrain_objectives import (
    STAT_NAMES,
    objective_sums,
    prediction_counts,
    prepare,
    summarize,
    uses_nsp,
)
from bertforge.training.schedules import build_schedule
from bertforge.training.tracking import (
    METRICS_FILE,
    PLOT_FILE,
    MetricsLog,
    plot_curves,
    read_metrics,
)
from bertforge.training.tracking import progress_bar as make_bar


class NonFiniteLossError(RuntimeError):
    """The loss was NaN or infinite for too many steps in a row."""


@dataclass
class Progress:
    """Counters saved in every checkpoint."""

    step: int = 0
    tokens: int = 0  # real (non-padding) tokens trained on, all processes
    skipped: int = 0  # steps skipped for a non-finite loss or gradient
    consecutive_nonfinite: int = 0
    elapsed: float = 0.0  # seconds of training in earlier processes of this run


@dataclass
class PretrainResult:
    """What a run left: the output directory, the final model, the last metrics."""

    out: Path
    final: Path
    step: int
    skipped: int
    last: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True  # the process that wrote the files (rank 0)


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run pre-training as ``cfg`` says (one process, or one rank under ``torchrun``)."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    info = init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    out, fresh = Path(cfg.out), not Path(cfg.out).exists()
    try:
        try:
            trainer = PreTrainer(cfg, info, device)
        except BaseException:
            _remove_if_empty(out if fresh else None)  # a bad setting leaves no empty --out
            raise
        return trainer.run()
    finally:
        shutdown(info)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PretrainConfigError(f"device {name!r} asked for but CUDA is not available")
    return torch.device(name)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also force deterministic
    kernels (CUDA then needs ``CUBLAS_WORKSPACE_CONFIG``, set here if absent)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 or fp16 autocast on ``device``; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class PreTrainer:
    """One run's state: data, model, optimiser, schedule, scaler, generators, logs."""

    def __init__(self, cfg: PretrainConfig, info: DistInfo, device: torch.device) -> None:
        cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))
        self.cfg, self.info, self.device = cfg, info, device
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        set_determinism(cfg.seed, cfg.deterministic)
        self.resume_dir = self._resume_dir()
        self.tokenizer, self.tokenizer_dir = self._tokenizer()
        self.train_data = open_shards(cfg.data)
        self.eval_data = open_shards(cfg.eval_data) if cfg.eval_data else None
        config = self._model_config()
        check_data(self.train_data, self.eval_data, cfg, config.vocab_size,
                   config.max_position_embeddings,
                   self.tokenizer.fingerprint() if self.tokenizer else None)
        self.sharded = cfg.fsdp and info.enabled
        if cfg.fsdp and not info.enabled:
            self._say("--fsdp: a single process has nothing to shard; training unsharded "
                      "(start it with torchrun --nproc_per_node N)")
        self.raw = self._build_model(config)
        self.micro, self.accum = cfg.accumulation(info.world_size)
        if self.sharded:
            self._shard()
        self._build_training_parts()
        self._ahead: Any = None  # the next step's batches, collated ahead (train_step)
        self.progress = Progress()
        # statistics of the steps since the last metrics record (saved: a resumed run logs
        # the same numbers as one never interrupted)
        self.window = torch.zeros(len(STAT_NAMES), dtype=torch.float64)
        self.window_steps = 0
        torch.manual_seed(cfg.seed + 7919 * info.rank)  # dropout: differs between processes
        if self.resume_dir is not None:
            self._restore(self.resume_dir)
        elif cfg.init_state:
            self._restore(Path(cfg.init), data=False)
        self.model = self._wrap(self.raw)
        self.log = MetricsLog(self.out, info.is_main, cfg.tensorboard)
        self.log.truncate_after(self.progress.step)

    # ------------------------------------------------------------- building
    def _resume_dir(self) -> Path | None:
        """The checkpoint to resume from: ``latest`` = newest valid one in ``out``."""
        if not self.cfg.resume:
            if ckpt.list_checkpoints(self.out):
                raise PretrainConfigError(f"{self.out}: holds checkpoints of an earlier run; "
                                          "pass --resume to continue it or choose a new --out")
            return None
        if self.cfg.resume != "latest":
            path = Path(self.cfg.resume)
            ckpt.verify(path)
            return path
        found = ckpt.find_latest(self.out, warn=self._say)
        if found is None:
            self._say(f"--resume: no valid checkpoint in {self.out}; starting from step 0")
        return found

    def _tokenizer(self) -> tuple[Any, Path | None]:
        """The vocabulary copied into checkpoints: --tokenizer, else the one beside the
        weights we start from; None when there is none (a preset on bare shards)."""
        from bertforge.tokenization import load_tokenizer

        for where in (self.cfg.tokenizer, self.resume_dir, self.cfg.init):
            if where and (Path(where).is_file() or _has_vocab(Path(where))):
                return load_tokenizer(where), Path(where)
        return None, None

    def _model_config(self) -> BertConfig:
        """From the checkpoint resumed, else --model-config or --preset (vocabulary size
        from the shards), else --init's own config; with dropout and the LTR causal mask.
        (--init with a preset loads weights into that architecture: shapes must match.)"""
        from bertforge.interop.checkpoint import config_from

        cfg, meta = self.cfg, self.train_data.meta
        if self.resume_dir is not None:
            config = config_from(self.resume_dir)
        elif cfg.init and not (cfg.model_config or cfg.preset):
            config = config_from(cfg.init)
        elif cfg.model_config:
            config = BertConfig.from_json_file(cfg.model_config)
        else:
            config = preset(cfg.preset, vocab_size=int(meta["tokenizer"]["vocab_size"]),
                            pad_token_id=int(meta["tokenizer"].get("pad_id", 0)))
        changes: dict[str, Any] = {"is_causal": cfg.objective == "ltr"}
        if cfg.dropout is not None:
            changes |= {"hidden_dropout_prob": cfg.dropout,
                        "attention_probs_dropout_prob": cfg.dropout}
        return config.replace(**changes)

    def _build_model(self, config: BertConfig) -> BertForPreTraining:
        # the same initial weights on every process; --init's weights then go over them
        model = initial_model(config, self.cfg.seed, self.cfg.init_scheme)
        if self.cfg.init and self.resume_dir is None:
            _load_init(model, self.cfg.init, self._say)
        if self.cfg.precision == "bf16":
            bf16_norms(model)
        # FSDP moves each shard to the device itself: the full model never has to fit it
        return (model if self.sharded else model.to(self.device)).train()

    def _shard(self) -> None:
        """FSDP: weights of the checkpoint resumed (or --init-state) in first, while the
        model is whole, then one shard group per encoder layer and one for the rest."""
        source = self.resume_dir or (Path(self.cfg.init) if self.cfg.init_state else None)
        if source is not None:
            ckpt.load_model_weights(self.raw, source)
        shard_model(self.raw, self.raw.bert.layers, self.info)

    def _build_training_parts(self) -> None:
        cfg = self.cfg
        self.optimizer = build_optimizer(self.raw, cfg.optimizer, cfg.lr, cfg.weight_decay,
                                         (cfg.beta1, cfg.beta2), cfg.eps)
        self._budget_used = 0.0  # share of --max-time used, for --decay-by-time
        self.scheduler = build_schedule(self.optimizer, cfg.schedule, cfg.warmup_steps,
                                        cfg.schedule_steps or cfg.max_steps,
                                        clock=(lambda: self._budget_used)
                                        if cfg.decay_by_time else None)
        self.scaler = _grad_scaler(self.device, cfg.precision == "fp16", self.sharded)
        self.stream = BatchStream(self.train_data, cfg.batch_size, self.micro, self.accum,
                                  self.info, cfg.seed)
        self.collator = build_collator(self.train_data.meta, cfg, self.tokenizer,
                                       seed=cfg.seed + 7919 * self.info.rank)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP across processes (unless already sharded), then ``torch.compile``."""
        if self.info.enabled and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # objectives without NSP leave the NSP head (and LTR the pooler) unused
            model = DDP(model, device_ids=ids,
                        find_unused_parameters=not uses_nsp(self.cfg.objective))
            self._ddp = model
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # ------------------------------------------------------------- resume
    def _restore(self, folder: Path, data: bool = True) -> None:
        """Model, optimiser, schedule, scaler, counters; with ``data`` also the data
        position and every generator (an exact resume)."""
        state = ckpt.load_training_state(folder, verified=data)
        if not self.sharded:  # (a sharded model got its weights before sharding)
            ckpt.load_model_weights(self.raw, folder)
        load_optimizer_state(self.raw, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        if not data:  # a new run (phase 2): its --max-time counts from 0
            self.progress.consecutive_nonfinite = 0
            self.progress.elapsed = 0.0
            return
        self.stream.load_state_dict(state["data"])
        self._restore_rng(state["rng"])
        if state.get("log_window") is not None:
            self.window = state["log_window"]["sums"].clone()
            self.window_steps = int(state["log_window"]["steps"])
        self._say(f"resumed from {folder} at step {self.progress.step}")

    def _restore_rng(self, per_rank: list[dict[str, Any]]) -> None:
        if len(per_rank) != self.info.world_size:
            self._say(f"the checkpoint has generator states of {len(per_rank)} process(es), "
                      f"this run has {self.info.world_size}: masks and dropout will differ "
                      "from an uninterrupted run")
            return
        extra = ckpt.set_rng_state(per_rank[self.info.rank])
        self.collator.load_state_dict(extra["collator"])

    def _training_state(self) -> dict[str, Any]:
        self.progress.elapsed = self._elapsed() if hasattr(self, "_start") else 0.0
        data, collator = self._data_state()
        rng = gather_objects(ckpt.rng_state({"collator": collator}), self.info)
        optimizer = (full_optimizer_state(self.raw, self.optimizer) if self.sharded
                     else self.optimizer.state_dict())
        return {"progress": dataclasses.asdict(self.progress), "optimizer": optimizer,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "data": data, "rng": rng,
                "log_window": {"sums": self.window.clone(), "steps": self.window_steps},
                "world_size": self.info.world_size, "run_config": dataclasses.asdict(self.cfg)}

    def save(self) -> Path | None:
        """Write ``checkpoint-STEP`` (main process); a failed write is reported, and
        training goes on (the earlier checkpoints are intact)."""
        state = self._training_state()  # collective: every process takes part
        model = self._whole_model()  # collective too
        path = None
        if self.info.is_main:
            extra = _vocab_files(self.tokenizer_dir)
            try:
                path = ckpt.save_checkpoint(self.out, self.progress.step, model, state,
                                            extra, keep_last=self.cfg.keep_last)
            except ckpt.CheckpointWriteError as err:
                self._say(f"warning: {err}")
        barrier(self.info)
        self._last_save = time.monotonic()
        return path

    def _whole_model(self) -> nn.Module | None:
        """The model to write: ``raw`` itself, or under FSDP an unsharded CPU copy on the
        main process (None on the others), built on the meta device and given the
        gathered tensors, so no second set of weights is ever allocated. Collective."""
        if not self.sharded:
            return self.raw
        weights = full_model_state(self.raw)
        if not self.info.is_main:
            return None
        with torch.device("meta"):
            whole = BertForPreTraining(self.raw.config)
        whole.load_state_dict(weights, assign=True)
        return whole
    # ------------------------------------------------------------- the loop
    def run(self) -> PretrainResult:
        cfg, p = self.cfg, self.progress
        self._start, self._last_save = time.monotonic(), time.monotonic()
        self._elapsed0, self._tokens0, self._step0 = p.elapsed, p.tokens, p.step
        bar = make_bar(cfg.max_steps, p.step, cfg.progress and self.info.is_main)
        last: dict[str, Any] = {}
        saved_step = p.step if self.resume_dir else -1
        lr, grad_norm = self.optimizer.param_groups[0]["lr"], float("nan")
        stop = self._stopping()
        if stop and p.step < cfg.max_steps:
            self._say(f"--max-time {cfg.max_time:g} minutes already used by this run "
                      f"({p.elapsed / 60:.2f} minutes trained, step {p.step}); raise "
                      "--max-time to train further")
        try:
            while not stop:
                stats, lr, grad_norm = self.train_step()
                stop = self._stopping()
                if stats is None:
                    continue
                self.window += stats
                self.window_steps += 1
                # the last step (--max-steps or --max-time) is always recorded, and
                # evaluated when there is held-out data
                is_eval = self.eval_data is not None and (p.step % cfg.eval_every == 0 or stop)
                if p.step % cfg.log_every == 0 or is_eval or stop:
                    last = self._log(self.window, self.window_steps, lr, grad_norm, is_eval,
                                     bar)
                    self.window.zero_()
                    self.window_steps = 0
                bar.update(1)
                if self._save_due():
                    self.save()
                    saved_step = p.step
            if self.window_steps:  # steps not yet recorded (the last ones skipped, or a
                # resumed run whose --max-time was already up)
                last = self._log(self.window, self.window_steps, lr, grad_norm,
                                 self.eval_data is not None, bar)
                self.window.zero_()
                self.window_steps = 0
        finally:
            bar.close()
        if saved_step != p.step:
            self.save()
        return self._finish(last)

    def _stopping(self) -> bool:
        """True once --max-steps are done or --max-time is up (collective)."""
        return self.progress.step >= self.cfg.max_steps or self._time_up()

    def train_step(self) -> tuple[torch.Tensor | None, float, float]:
        """One optimiser step. Returns the step's summed statistics (None if skipped for
        a non-finite loss), the learning rate used and the gradient norm.

        The host keeps one step ahead of the device: once this step's forward and backward
        passes are queued, it collates the next step's batches (masks, padding, pinned
        copies) while the device computes, and only then waits for this step's loss. The
        batches and masks are the same as without the look-ahead (the collator has its own
        generator); a checkpoint records the data position and the collator's state from
        before the look-ahead, so a resumed run draws that batch again."""
        host, counts, _ = self._ahead if self._ahead is not None else self._host_batches()
        self._ahead = None
        counts = all_reduce_sum(counts, self.info)
        inputs = [self._to_device(x) for x in host]
        lr = self.optimizer.param_groups[0]["lr"]
        stats: torch.Tensor | float = 0.0
        for k, x in enumerate(inputs):
            stats = stats + self._forward_backward(x, counts, last=k == len(inputs) - 1)
        self._ahead = self._host_batches()  # overlaps the device's work on this step
        assert isinstance(stats, torch.Tensor)
        stats = all_reduce_sum(stats.cpu(), self.info)
        loss = summarize(stats)["loss"]
        grad_norm = self._unscale_and_clip() if np.isfinite(loss) else float("nan")
        # fp16 overflows in the gradient are the loss scaler's business (it skips the step)
        if not np.isfinite(loss) or (not np.isfinite(grad_norm)
                                     and not self.scaler.is_enabled()):
            self._skip_step(loss, grad_norm)
            return None, lr, grad_norm
        self.progress.consecutive_nonfinite = 0
        if not self._optimizer_step():
            self.progress.skipped += 1
            return None, lr, grad_norm
        self.progress.step += 1
        self.progress.tokens += int(stats[STAT_NAMES.index("tokens")])
        return stats, lr, grad_norm

    def _host_batches(self) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor,
                                      tuple[dict[str, Any], dict[str, Any]]]:
        """The next step's micro-batches collated on the host (pinned for CUDA), their
        prediction counts (float64 [2], counted on the host: no device sync) and the data
        position and collator state from before drawing them."""
        before = (self.stream.state_dict(), self.collator.state_dict())
        host = [self._pinned(prepare(self.collator(b), self.cfg.objective))
                for b in self.stream.next_step()]
        return host, sum(prediction_counts(x) for x in host), before

    def _data_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data position, collator state) at which the next step's batches are drawn."""
        if self._ahead is not None:
            return self._ahead[2]
        return self.stream.state_dict(), self.collator.state_dict()

    def _pinned(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type != "cuda":
            return inputs
        return {k: v.pin_memory() for k, v in inputs.items()}

    def _to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type != "cuda":
            return inputs
        return {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}

    def _forward_backward(self, inputs: dict[str, torch.Tensor], counts: torch.Tensor,
                          last: bool) -> torch.Tensor:
        """Backward of this micro-batch's share of the global mean loss; its stats (on the
        device: reading them would wait for the device)."""
        if self.sharded:  # FSDP: reduce-scatter the gradients after the last micro-batch
            self.raw.set_requires_gradient_sync(last)
        sync = contextlib.nullcontext() if last or not self.info.enabled or self.sharded else (
            self._ddp.no_sync())
        with sync:
            with autocast_context(self.cfg.precision, self.device):
                sums = objective_sums(self.model, inputs, self.cfg.objective)
            mlm_n, nsp_n = (max(float(c), 1.0) for c in counts)
            # DDP and FSDP average gradients over processes: multiply back to sum / count
            loss = (sums.mlm_loss_sum / mlm_n + sums.nsp_loss_sum / nsp_n) * (
                self.info.world_size)
            self.scaler.scale(loss).backward()
        return sums.stats

    def _unscale_and_clip(self) -> float:
        """Unscale (fp16) and clip the global gradient norm; returns the norm before."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.raw.parameters() if p.grad is not None]
        max_norm = self.cfg.max_grad_norm or float("inf")
        return float(local_value(clip_grad_norm(params, max_norm)))

    def _optimizer_step(self) -> bool:
        """Step optimiser and schedule; False when the fp16 scaler skipped the update
        (overflowing gradients), in which case the schedule does not move either."""
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if scale is not None and self.scaler.get_scale() < scale:
            return False
        if self.cfg.decay_by_time:  # rank 0's clock, so that every process agrees
            used = min(1.0, self._elapsed() / (60.0 * self.cfg.max_time))
            self._budget_used = broadcast_value(used, self.info)
        self.scheduler.step()
        return True

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        """Drop the gradients of a non-finite step; abort after ``max_nonfinite`` in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update(self.scaler.get_scale() / 2)
        p = self.progress
        p.skipped += 1
        p.consecutive_nonfinite += 1
        self._say(f"step {p.step + 1}: non-finite loss {loss} / gradient norm {grad_norm}; "
                  f"step skipped ({p.consecutive_nonfinite} in a row, {p.skipped} in all)")
        if p.consecutive_nonfinite >= self.cfg.max_nonfinite:
            raise NonFiniteLossError(
                f"the loss was non-finite for {p.consecutive_nonfinite} steps in a row (step "
                f"{p.step + 1}); lower --lr, raise --warmup-steps, use --precision bf16 "
                f"instead of fp16, or check the data; resume from the last checkpoint in "
                f"{self.out}")

    # ------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out MLM loss/accuracy and NSP accuracy over ``eval_batches`` micro-batches.
        Masks come from a collator with a fixed seed, so every evaluation sees the same
        masks; no training generator is touched."""
        if not hasattr(self, "_eval_batches"):
            self._eval_batches = self._eval_plan()
        collator = build_collator(self.eval_data.meta, self.cfg, self.tokenizer,
                                  seed=self.cfg.seed + 1)
        self.raw.eval()
        stats = torch.zeros(len(STAT_NAMES), dtype=torch.float64)
        for batch, counted in self._eval_batches:
            inputs = self._to_device(self._pinned(prepare(collator(batch),
                                                          self.cfg.objective)))
            with autocast_context(self.cfg.precision, self.device):
                sums = objective_sums(self.raw, inputs, self.cfg.objective)
            if counted:
                stats += sums.stats.cpu()
        if self.sharded:  # FSDP keeps the root's weights gathered after a forward without
            self.raw.reshard()  # backward; the optimiser holds the shards: back to those
        self.raw.train()
        s = summarize(all_reduce_sum(stats, self.info))
        return {"eval_loss": s["loss"], "eval_mlm_loss": s["mlm_loss"],
                "eval_mlm_acc": s["mlm_acc"], "eval_nsp_acc": s["nsp_acc"]}

    def _eval_plan(self) -> list[tuple[list[Any], bool]]:
        """This process's evaluation micro-batches, each with whether it counts. Under
        FSDP every forward pass all-gathers weights with all processes, so a process with
        fewer batches than another repeats one uncounted (else the others would wait)."""
        batches = eval_batches(self.eval_data, self.micro, self.cfg.eval_batches, self.info)
        plan = [(b, True) for b in batches]
        if self.sharded:
            most = max(gather_objects(len(batches), self.info))
            filler = batches[0] if batches else [self.eval_data[0]]
            plan += [(filler, False)] * (most - len(batches))
        return plan

    # ------------------------------------------------------------- bookkeeping
    def _log(self, window: torch.Tensor, steps: int, lr: float, grad_norm: float,
             is_eval: bool, bar: Any) -> dict[str, Any]:
        s = summarize(window)
        rate = (self.progress.tokens - self._tokens0) / max(time.monotonic() - self._start, 1e-9)
        record = {"step": self.progress.step, "tokens": self.progress.tokens,
                  "loss": s["loss"], "mlm_loss": s["mlm_loss"], "nsp_loss": s["nsp_loss"],
                  "mlm_acc": s["mlm_acc"], "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_s": rate, "skipped": self.progress.skipped,
                  "elapsed_s": self._elapsed()}
        if is_eval:
            record |= self.evaluate()
        self.log.write(record)
        bar.set_postfix(loss=f"{s['loss']:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
        self._fit_bar_to_time(bar)
        return record

    def _fit_bar_to_time(self, bar: Any) -> None:
        """With --max-time, the bar's total is the steps the time left allows at the
        current pace (capped by --max-steps), so its ETA is the real one."""
        if self.cfg.max_time is None or getattr(bar, "disable", True):
            return
        done = self.progress.step - self._step0
        pace = done / max(time.monotonic() - self._start, 1e-9)  # steps per second
        left = max(60.0 * self.cfg.max_time - self._elapsed(), 0.0)
        bar.total = min(self.cfg.max_steps, self.progress.step + int(pace * left))

    def _elapsed(self) -> float:
        """Seconds of training in this run, earlier processes included."""
        return self._elapsed0 + time.monotonic() - self._start

    def _time_up(self) -> bool:
        up = self.cfg.max_time is not None and self._elapsed() >= 60.0 * self.cfg.max_time
        return broadcast_flag(up, self.info)

    def _save_due(self) -> bool:
        by_step = self.progress.step % self.cfg.save_every == 0
        minutes = self.cfg.save_every_minutes
        by_time = minutes is not None and time.monotonic() - self._last_save >= 60 * minutes
        return broadcast_flag(by_step or by_time, self.info)

    def _finish(self, last: dict[str, Any]) -> PretrainResult:
        """``OUT/final`` (model + vocabulary) and the curves PNG."""
        final = self.out / "final"
        model = self._whole_model()  # collective under FSDP
        if self.info.is_main:
            model.save_pretrained(str(final))
            for name, source in _vocab_files(self.tokenizer_dir).items():
                (final / name).write_bytes(Path(source).read_bytes())
            if (self.out / METRICS_FILE).is_file():
                plot_curves(read_metrics(self.out / METRICS_FILE), self.out / PLOT_FILE)
        self.log.close()
        barrier(self.info)
        return PretrainResult(self.out, final, self.progress.step, self.progress.skipped, last,
                              self.info.is_main)

    def _say(self, message: str) -> None:
        if self.info.is_main:
            print(f"bertforge pretrain: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ helpers
VOCAB_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")


def _has_vocab(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).is_file() for n in VOCAB_FILES[:2])


def _remove_if_empty(folder: Path | None) -> None:
    """Remove ``folder`` if it is an empty directory (another process may have filled or
    removed it meanwhile: then leave it)."""
    with contextlib.suppress(OSError):
        if folder is not None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _vocab_files(folder: Path | None) -> dict[str, Path]:
    """The tokenizer files of ``folder`` (or of a vocab file's folder) to copy."""
    if folder is None:
        return {}
    folder = folder if folder.is_dir() else folder.parent
    return {n: folder / n for n in VOCAB_FILES if (folder / n).is_file()}


def _grad_scaler(device: torch.device, enabled: bool, sharded: bool) -> torch.amp.GradScaler:
    """fp16's loss scaler. Sharded gradients need FSDP's, which agrees across processes
    on whether any shard overflowed (else one process could skip a step the others take)."""
    if sharded and enabled:
        import warnings

        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        # torch's own [1]-shaped scale meeting DTensor gradients: replicated, as it should be
        warnings.filterwarnings("ignore", message="Found a non-scalar tensor with numel=1")
        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type, enabled=enabled)


def _load_init(model: BertForPreTraining, init: str, say: Any) -> None:
    """Weights of ``init`` (any Hugging Face or Google checkpoint) into ``model``; heads
    the checkpoint lacks (a bare encoder) stay freshly initialised."""
    import warnings

    from bertforge.interop.checkpoint import load_state, read_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_state(model, read_checkpoint(init), strict=False)
    for w in caught:
        say(str(w.message))
