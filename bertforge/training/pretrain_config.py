"""``PretrainConfig``: every setting of a pre-training run, checked in one place.

The CLI (``bertforge pretrain``) fills it from YAML and flags; library users build it
directly. Step counts are optimiser updates; ``batch_size`` is the global batch in
instances (all processes, all accumulation steps together).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertforge.config import INIT_SCHEMES, OBJECTIVES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 on CUDA with bf16, else fp32
# objective -> what the shard data must have been built with (meta parameters.objective)
DATA_OBJECTIVES = {"mlm_nsp": ("nsp",), "mlm_sop": ("sop",), "mlm": ("nsp", "sop", "none"),
                   "ltr": ("nsp", "sop", "none")}


class PretrainConfigError(ValueError):
    """A pre-training setting is missing or out of range; the message names it."""


@dataclass
class PretrainConfig:
    """Settings of one pre-training run (defaults: the paper's optimiser settings)."""

    data: str | None = None
    out: str | None = None
    eval_data: str | None = None
    # the model: one of preset / model_config / init (init also loads the weights)
    preset: str | None = None
    model_config: str | None = None
    init: str | None = None
    init_state: bool = False  # also take optimiser, schedule and step from --init (phase 2)
    tokenizer: str | None = None  # copied into checkpoints; its fingerprint must match data
    objective: str = "mlm_nsp"
    init_scheme: str = "bert"  # initial weights of a new model: bert | local (model/init.py)
    # length and batching
    max_steps: int = 1000
    max_time: float | None = None  # minutes of training, then stop (checkpoint + final)
    batch_size: int = 256
    micro_batch_size: int | None = None  # per process; None = batch_size / processes
    # optimiser and schedule
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6
    max_grad_norm: float = 1.0
    schedule: str = "linear"
    warmup_steps: int = 10000
    schedule_steps: int | None = None  # the schedule's length; None = max_steps
    decay_by_time: bool = False  # with max_time: decay to 0 when the time is up
    # masking for dynamically masked shards (None: the data's own parameters)
    masked_lm_prob: float | None = None
    max_predictions_per_seq: int | None = None
    whole_word_mask: bool | None = None
    # bookkeeping
    seed: int = 12345
    deterministic: bool = False
    log_every: int = 10
    eval_every: int = 1000
    eval_batches: int = 50
    save_every: int = 1000
    save_every_minutes: float | None = None
    keep_last: int = 3
    resume: str | None = None  # "latest" or a checkpoint directory
    # speed
    fsdp: bool = False  # under torchrun: shard the model with FSDP2 instead of DDP
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None: torch's default)
    pad_to_multiple_of: int | None = None
    max_nonfinite: int = 10  # abort after this many non-finite losses in a row
    tensorboard: bool = True
    progress: bool = True
    dropout: float | None = None  # overrides hidden and attention dropout when set

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def check(self) -> None:
        """Raise ``PretrainConfigError`` naming the first setting that cannot work."""
        if not self.data:
            raise PretrainConfigError("data: no training shards given; pass --data DIR (the "
                                      "--out of 'bertforge data create')")
        if not self.out:
            raise PretrainConfigError("out: no output directory given; pass --out DIR")
        sources = [n for n in ("preset", "model_config") if getattr(self, n)]
        if len(sources) > 1:
            raise PretrainConfigError("give only one of --preset and --model-config")
        if not sources and not self.init and not self.resume:
            raise PretrainConfigError("no model given; pass --preset NAME, --model-config "
                                      "FILE or --init DIR")
        if self.init_state and not self.init:
            raise PretrainConfigError("init_state needs --init DIR (a checkpoint-STEP "
                                      "directory of an earlier run)")
        self._check_choices()
        self._check_numbers()

    def _check_choices(self) -> None:
        for name, value, allowed in (("objective", self.objective, OBJECTIVES),
                                     ("precision", self.precision, PRECISIONS),
                                     ("init_scheme", self.init_scheme, INIT_SCHEMES)):
            if value not in allowed:
                raise PretrainConfigError(f"{name} must be one of {', '.join(allowed)}, got "
                                          f"{value!r}")

    def _check_numbers(self) -> None:
        for name in ("max_steps", "batch_size", "log_every", "eval_every", "save_every",
                     "eval_batches", "max_nonfinite"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PretrainConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise PretrainConfigError(f"schedule_steps must be >= 1, got {self.schedule_steps}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise PretrainConfigError(f"micro_batch_size must be >= 1, got "
                                      f"{self.micro_batch_size}")
        if self.warmup_steps < 0 or self.keep_last < 0:
            raise PretrainConfigError("warmup_steps and keep_last must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise PretrainConfigError(f"threads must be >= 1, got {self.threads}")
        if self.max_grad_norm < 0:
            raise PretrainConfigError(f"max_grad_norm must be >= 0 (0 = no clipping), got "
                                      f"{self.max_grad_norm}")
        for name in ("max_time", "save_every_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise PretrainConfigError(f"{name} must be > 0 minutes, got {value}")
        if self.decay_by_time and self.max_time is None:
            raise PretrainConfigError("decay_by_time needs max_time (--max-time MINUTES): "
                                      "the schedule decays to 0 when the time is up")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise PretrainConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def accumulation(self, world_size: int) -> tuple[int, int]:
        """``(micro_batch_size, accumulation steps)`` so that micro x accum x world equals
        ``batch_size``; a clear error when it does not divide."""
        micro = self.micro_batch_size or max(1, self.batch_size // world_size)
        per_step = micro * world_size
        if self.batch_size % per_step:
            raise PretrainConfigError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {micro} "
                f"x {world_size} process(es); choose sizes that divide")
        return micro, self.batch_size // per_step
