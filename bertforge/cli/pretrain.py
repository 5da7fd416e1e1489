"""``bertforge pretrain``: pre-train BERT (MLM + NSP/SOP, MLM only, or left-to-right).

Every option can come from ``--config run.yaml`` (keys are the option names with
underscores, e.g. ``max_steps: 1000``); flags given on the command line win. Ready
configs ship in ``bertforge/configs/`` (``paper_phase1.yaml``, ``paper_phase2.yaml``,
``cpu_tiny.yaml``); ``--config cpu_tiny`` finds one by name. Under
``torchrun --nproc_per_node N -m bertforge pretrain ...`` it trains with DDP, or with
``--fsdp`` with FSDP2 (weights, gradients and optimiser state sharded over the processes,
for models that do not fit one device).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertforge.config import INIT_SCHEMES, OBJECTIVES
from bertforge.training.pretrain_config import PRECISIONS, PretrainConfig

_D = PretrainConfig()

# (flag, type, help); the default is PretrainConfig's
_OPTIONS: list[tuple[str, type, str]] = [
    ("--data", str, "training shard directory (from 'bertforge data create')"),
    ("--eval-data", str, "held-out shard directory for evaluation"),
    ("--out", str, "output directory: checkpoints, metrics.jsonl, curves.png, final/"),
    ("--preset", str, "model size: tiny, mini, small, medium, base, large, L-4_H-256…"),
    ("--model-config", str, "model config.json (Hugging Face or Google field names)"),
    ("--init", str, "start from this checkpoint's weights (any HF/Google checkpoint)"),
    ("--tokenizer", str, "vocabulary directory copied into checkpoints and checked "
                         "against the shards"),
    ("--max-steps", int, "optimiser steps (also the schedule's length)"),
    ("--max-time", float, "stop after this many minutes of training (a resumed run "
                          "counts its earlier minutes; --init-state starts a new count)"),
    ("--batch-size", int, "global batch in instances (all processes)"),
    ("--micro-batch-size", int, "instances per forward pass and process; gradient "
                                "accumulation makes up the rest"),
    ("--optimizer", str, "adamw | adam_weight_decay (Google's) | lamb"),
    ("--lr", float, "peak learning rate"),
    ("--weight-decay", float, "decoupled weight decay (not on LayerNorm and biases)"),
    ("--beta1", float, "Adam beta1"),
    ("--beta2", float, "Adam beta2"),
    ("--eps", float, "Adam epsilon"),
    ("--max-grad-norm", float, "global gradient-norm clipping (0: none)"),
    ("--schedule", str, "linear | google | constant"),
    ("--warmup-steps", int, "linear warm-up steps"),
    ("--schedule-steps", int, "length of the schedule if not --max-steps (a run in "
                              "phases)"),
    ("--masked-lm-prob", float, "for dynamically masked shards [the data's]"),
    ("--max-predictions-per-seq", int, "for dynamically masked shards [the data's]"),
    ("--seed", int, "seed of data order, masks, dropout and initial weights"),
    ("--log-every", int, "steps between metrics.jsonl records"),
    ("--eval-every", int, "steps between evaluations on --eval-data (the last step is "
                          "always evaluated)"),
    ("--eval-batches", int, "micro-batches per evaluation"),
    ("--save-every", int, "steps between checkpoints"),
    ("--save-every-minutes", float, "also checkpoint after this many minutes"),
    ("--keep-last", int, "checkpoints to keep (0: all)"),
    ("--precision", str, f"{' | '.join(PRECISIONS)}: bf16/fp16 autocast (fp16 with loss "
                         "scaling); auto = bf16 on a CUDA device with bf16, else fp32"),
    ("--device", str, "auto | cpu | cuda | cuda:N"),
    ("--threads", int, "torch CPU threads [torch's default]"),
    ("--pad-to-multiple-of", int, "pad sequence lengths to a multiple (e.g. 8 on GPUs)"),
    ("--max-nonfinite", int, "abort after this many non-finite losses in a row"),
    ("--dropout", float, "override hidden and attention dropout"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # main's --config: let a ready config's name stand for it
        if action.dest == "config":
            action.type = config_path
            action.help = (action.help or "") + "; or a ready config's name (cpu_tiny, " \
                "paper_phase1, paper_phase2)"
    for flag, kind, text in _OPTIONS:
        dest = flag[2:].replace("-", "_")
        default = getattr(_D, dest)
        parser.add_argument(flag, type=kind, default=default,
                            help=text + (f" [{default}]" if default is not None else ""))
    parser.add_argument("--objective", default=_D.objective,
                        choices=OBJECTIVES,
                        help="mlm_nsp (the paper), mlm, mlm_sop, ltr (left-to-right, no "
                             f"NSP) [{_D.objective}]")
    parser.add_argument("--init-scheme", default=_D.init_scheme, choices=INIT_SCHEMES,
                        help="initial weights of a new model: bert (the paper's N(0, 0.02)) "
                             "or local (sinusoid positions and key = query, so attention "
                             "starts local: a small model leaves the unigram plateau about "
                             f"1,400 steps sooner) [{_D.init_scheme}]")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="DIR",
                        help="continue from the newest valid checkpoint in --out (or DIR)")
    parser.add_argument("--init-state", action="store_true",
                        help="also take optimiser, schedule and step from --init (a "
                             "checkpoint-STEP of phase 1), with new data")
    parser.add_argument("--whole-word-mask", action="store_true", default=None,
                        help="whole-word masking for dynamically masked shards")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic kernels (bit-exact resume on a CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--decay-by-time", action="store_true",
                        help="with --max-time: the learning rate decays by the steps or the "
                             "clock, whichever is further along, and reaches 0 when the time "
                             "is up (a budget-aware schedule; not bit-reproducible)")
    parser.add_argument("--fsdp", action="store_true",
                        help="under torchrun: shard weights, gradients and optimiser state "
                             "over the processes (FSDP2, one encoder layer at a time) instead "
                             "of replicating them with DDP; for models that do not fit one "
                             "device. Checkpoints stay full Hugging Face-shaped models")
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                        help="no TensorBoard event files")
    parser.add_argument("--quiet", dest="progress", action="store_false",
                        help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from bertforge.training.pretrain import pretrain

    values = {name: getattr(args, name) for name in PretrainConfig.field_names()
              if hasattr(args, name)}
    result = pretrain(PretrainConfig(**values))
    if not result.is_main:
        return 0
    last = result.last
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "eval_mlm_acc", "eval_nsp_acc")
                        if isinstance(last.get(k), float))
    summary = f": {summary}" if summary else ""
    print(f"trained {result.step} steps ({result.skipped} skipped){summary}; model in "
          f"{result.final}")
    return 0


def config_path(name: str) -> str:
    """A ready config by name (``cpu_tiny``) -> its packaged file; anything else as given."""
    path = Path(name)
    ready = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    if not path.exists() and path.suffix not in (".yaml", ".yml") and ready.is_file():
        return str(ready)
    return name
