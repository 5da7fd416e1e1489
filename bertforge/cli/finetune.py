"""``bertforge finetune TASK``: GLUE, your own classification data, SQuAD, NER, multiple choice.

Examples::

    bertforge finetune glue --task MRPC --data-dir glue/MRPC --model MODEL --out runs/mrpc
    bertforge finetune classify --train t.csv --dev d.csv --text-column text \\
        --label-column label --model MODEL --out runs/mine
    bertforge finetune squad --train train-v2.0.json --dev dev-v2.0.json --version 2.0 ...
    bertforge finetune ner --train train.txt --dev valid.txt --model MODEL --out runs/ner
    bertforge finetune multiple-choice --train train.csv --dev val.csv --model MODEL ...

``--seeds K`` runs K seeds and reports mean ± std; ``--grid`` searches the paper's grid.
``--save-every N`` writes resumable checkpoints; ``--resume`` continues a killed run.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from bertforge.inference.common import resolve_device
from bertforge.interop.checkpoint import config_from
from bertforge.tasks.common import LabelMap
from bertforge.training.finetune import FinetuneArgs, FinetuneTask, finetune, predict_rows
from bertforge.training.finetune_search import PAPER_GRID, grid_search, run_seeds
from bertforge.training.precision import PRECISIONS, resolve_precision

TASKS = ("glue", "classify", "squad", "ner", "multiple-choice")
DEFAULT_MAX_LENGTH = {"squad": 384}


class FinetuneUsageError(ValueError):
    """A missing or contradictory option."""


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options naming the data, shared with ``evaluate`` and ``predict``."""
    parser.add_argument("task", choices=TASKS, help="which kind of task")
    parser.add_argument("--model", help="model directory (Hugging Face-shaped)")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--max-length", type=int, help="max tokens (default 128; SQuAD 384)")
    g = parser.add_argument_group("GLUE")
    g.add_argument("--task", "--glue-task", dest="glue_task",
                   help="CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE or WNLI")
    g.add_argument("--data-dir", help="the task's folder in download_glue_data.py's layout")
    g = parser.add_argument_group("files (classify, squad, ner, multiple-choice)")
    g.add_argument("--train", help="training file")
    g.add_argument("--dev", help="development file (scored after every epoch)")
    g.add_argument("--text-column", default="text")
    g.add_argument("--text-pair-column")
    g.add_argument("--label-column", default="label")
    g.add_argument("--id-column")
    g.add_argument("--problem", default="single_label",
                   choices=("single_label", "multi_label", "regression"))
    g.add_argument("--label-sep", default=",", help="separator of multi-label CSV/TSV labels")
    g = parser.add_argument_group("SQuAD")
    g.add_argument("--version", default="1.1", choices=("1.1", "2.0"))
    g.add_argument("--doc-stride", type=int, default=128)
    g.add_argument("--max-query-length", type=int, default=64)
    g.add_argument("--n-best", type=int, default=20)
    g.add_argument("--max-answer-length", type=int, default=30)
    g.add_argument("--null-threshold", type=float, default=0.0)
    g.add_argument("--train-articles", help="article slice of --train, e.g. 0:24")
    g.add_argument("--dev-articles", help="article slice of --dev, e.g. 24:48")
    g.add_argument("--skip-bad-answers", action="store_true",
                   help="leave out training answers whose text is not at their offset")
    g = parser.add_argument_group("NER")
    g.add_argument("--scheme", help="IOB1, IOB2 or IOBES (default: detected)")
    g.add_argument("--feature-based", action="store_true",
                   help="frozen BERT, last four layers, two-layer BiLSTM (the paper's 5.3)")
    g.add_argument("--lstm-size", type=int, default=256)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    g = parser.add_argument_group("training (defaults: the paper's recipe)")
    g.add_argument("--lr", type=float, default=2e-5)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--epochs", type=float, default=3.0)
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--optimizer", default="adamw", choices=("adamw", "adam_weight_decay"))
    g.add_argument("--schedule", default="linear", choices=("linear", "google", "constant"))
    g.add_argument("--dropout", type=float, help="hidden dropout (default: the checkpoint's)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--seeds", type=int, default=1, help="run this many seeds: mean ± std")
    g.add_argument("--grid", action="store_true",
                   help="search lr {5e-5,3e-5,2e-5} x batch {16,32} x epochs {2,3,4}")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="bf16/fp16 autocast; auto: bf16 on a CUDA device with bf16, else fp32")
    g.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches of --batch-size per update (the update's batch is "
                        "their product)")
    g.add_argument("--eval-batch-size", type=int, default=64)
    g.add_argument("--patience", type=int, help="stop after this many epochs without gain")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA if any)")
    g.add_argument("--no-group-by-length", action="store_true")
    g.add_argument("--save-every", type=int, metavar="STEPS",
                   help="write a resumable checkpoint (OUT/checkpoint-STEP) every STEPS "
                        "optimizer steps and after every evaluation (default: none)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --out (same settings)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bit-exact resume on a CPU)")
    g.add_argument("--train-limit", type=int,
                   help="use only the first N training examples (SQuAD: feature windows)")
    g.add_argument("--dev-limit", type=int, help="use only the first N dev examples (GLUE)")
    g = parser.add_argument_group("tricks (each off by default)")
    g.add_argument("--layer-decay", type=float, default=1.0,
                   help="layer-wise lr decay factor, e.g. 0.9: the head and pooler get "
                        "--lr, layer i of L (0 = bottom) lr x decay^(L - i), the "
                        "embeddings lr x decay^(L + 1)")
    g.add_argument("--reinit-layers", type=int, default=0,
                   help="re-initialise the top N layers and the pooler as BERT initialises "
                        "(N(0, initializer_range))")
    g.add_argument("--fgm-epsilon", type=float, default=0.0,
                   help="FGM adversarial training on the embeddings, e.g. 1.0")
    g.add_argument("--pooling", default=None, choices=("cls", "mean", "cls-last4"),
                   help="sentence representation for classification and multiple choice "
                        "(default: the checkpoint's, else cls)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


# ------------------------------------------------------------------ building tasks
def need(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name, None) in (None, ""):
            raise FinetuneUsageError(f"'{args.task}' needs --{name.replace('_', '-')}")


def article_slice(text: str | None) -> slice | None:
    """``"0:24"`` -> slice(0, 24); None stays None."""
    if not text:
        return None
    try:
        start, stop = (int(x) if x else None for x in text.split(":"))
    except ValueError:
        raise FinetuneUsageError(f"article slice {text!r} should look like 0:24") from None
    return slice(start, stop)


def model_options(args: argparse.Namespace) -> object:
    from bertforge.training.finetune_tasks import ModelOptions
    max_length = args.max_length or DEFAULT_MAX_LENGTH.get(args.task, 128)
    if args.model and args.max_length:  # checked before any data is read or trained on
        positions = config_from(args.model).max_position_embeddings
        if max_length > positions:
            raise FinetuneUsageError(f"--max-length {max_length} exceeds the model's "
                                     f"{positions} positions (max_position_embeddings); "
                                     f"use --max-length {positions} or less")
    return ModelOptions(args.model, max_length, getattr(args, "dropout", None),
                        getattr(args, "pooling", None))


def saved_labels(model_dir: str) -> LabelMap | None:
    """The label map in a fine-tuned model's config.json (None for a bare encoder)."""
    config = config_from(model_dir)
    return LabelMap.from_id2label(config.id2label) if config.id2label else None


def task_factory(args: argparse.Namespace, training: bool = True) -> Callable[[], FinetuneTask]:
    """A function building the task afresh (new model) each call; data is read once.
    With ``training=False`` no training file is read and labels come from the model."""
    need(args, "model")
    builders = {"glue": _glue, "classify": _classify, "squad": _squad, "ner": _ner,
                "multiple-choice": _choice}
    limit = getattr(args, "train_limit", None)
    if limit is not None and limit < 1:
        raise FinetuneUsageError(f"--train-limit must be at least 1, got {limit}")
    make = builders[args.task](args, training)
    if not training or limit is None or args.task == "glue":  # GLUE limits while reading
        return make

    def limited() -> FinetuneTask:
        task = make()
        task.train_rows = task.train_rows[:limit]
        return task
    return limited


def _glue(args: argparse.Namespace, training: bool) -> Callable[[], FinetuneTask]:
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import glue_setup, load_glue_data
    need(args, "glue_task", "data_dir")
    options = model_options(args)
    data = load_glue_data(args.data_dir, args.glue_task, load_tokenizer(args.model),
                          options.max_length, getattr(args, "train_limit", None),
                          getattr(args, "dev_limit", None), with_train=training)
    return lambda: glue_setup(args.data_dir, args.glue_task, options, data)


def _classify(args: argparse.Namespace, training: bool) -> Callable[[], FinetuneTask]:
    from bertforge.tasks.classify import Columns
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import classify_setup, load_classify_data
    need(args, "dev", *(["train"] if training else []))
    options = model_options(args)
    columns = Columns(args.text_column, args.text_pair_column, args.label_column,
                      args.id_column)
    data = load_classify_data(args.train if training else None, args.dev, columns,
                              load_tokenizer(args.model), args.problem, options.max_length,
                              args.label_sep, None if training else saved_labels(args.model))
    return lambda: classify_setup(data, options)


def _squad(args: argparse.Namespace, training: bool) -> Callable[[], FinetuneTask]:
    from bertforge.training.finetune_squad import SquadOptions, squad_setup
    need(args, "dev", *(["train"] if training else []))
    options = model_options(args)
    squad = SquadOptions(args.version, options.max_length, args.doc_stride,
                         args.max_query_length, args.n_best, args.max_answer_length,
                         args.null_threshold)
    return lambda: squad_setup(args.train if training else None, args.dev, options, squad,
                               article_slice(args.train_articles),
                               article_slice(args.dev_articles), args.skip_bad_answers)


def _ner(args: argparse.Namespace, training: bool) -> Callable[[], FinetuneTask]:
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tagging import load_ner_data, ner_setup
    need(args, "dev", *(["train"] if training else []))
    options = model_options(args)
    scheme = args.scheme or (None if training else config_from(args.model).extra.get(
        "tag_scheme"))
    data = load_ner_data(args.train if training else None, args.dev, load_tokenizer(args.model),
                         options.max_length, scheme,
                         None if training else saved_labels(args.model))
    feature_based = args.feature_based or "feature_tagger" in config_from(args.model).extra
    return lambda: ner_setup(data, options, feature_based, args.lstm_size)


def _choice(args: argparse.Namespace, training: bool) -> Callable[[], FinetuneTask]:
    from bertforge.training.finetune_tagging import choice_setup
    need(args, "dev", *(["train"] if training else []))
    options = model_options(args)
    return lambda: choice_setup(args.train if training else None, args.dev, options)


# ------------------------------------------------------------------ running
def finetune_args(args: argparse.Namespace) -> FinetuneArgs:
    device = str(resolve_device(args.device))
    return FinetuneArgs(
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        optimizer=args.optimizer, schedule=args.schedule, grad_accum=args.grad_accum,
        seed=args.seed, precision=resolve_precision(args.precision, device),
        eval_batch_size=args.eval_batch_size,
        patience=args.patience, layer_decay=args.layer_decay,
        reinit_layers=args.reinit_layers, fgm_epsilon=args.fgm_epsilon,
        group_by_length=not args.no_group_by_length, device=device,
        max_steps=args.max_steps, progress=not args.quiet, save_every=args.save_every,
        resume=args.resume, deterministic=args.deterministic)


def run(args: argparse.Namespace) -> int:
    need(args, "model", "out")
    make_task = task_factory(args, training=True)
    train_args = finetune_args(args)
    out = Path(args.out)
    seeds = [args.seed + i for i in range(max(1, args.seeds))]
    if args.grid:
        report = grid_search(make_task, train_args, PAPER_GRID, seeds, out)
        best_dir = out / report["best"] / f"seed-{report['results'][report['best']]['best_seed']}"
    elif len(seeds) > 1:
        summary = run_seeds(make_task, train_args, seeds, out)
        best_dir = out / f"seed-{summary['best_seed']}"
    else:
        import torch

        torch.manual_seed(args.seed)  # a new head's initial weights follow --seed too
        result = finetune(make_task(), train_args, out)
        _print_result(result)
        best_dir = out
    if args.task == "glue":
        _glue_test(args, best_dir, train_args)
    return 0


def _print_result(result: dict) -> None:
    shown = {k: v for k, v in result.items() if isinstance(v, float) and k != "train_seconds"}
    print(" ".join(f"{k}={v:.4f}" for k, v in shown.items()),
          f"(best epoch {result['best_epoch']}, {result['train_seconds']:.0f} s)")


def _glue_test(args: argparse.Namespace, run_dir: Path, train_args: FinetuneArgs) -> None:
    """Submission files from the best checkpoint, when the test files exist."""
    from bertforge.model.task_heads import BertForSequenceClassification
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import predict_glue_test
    best = run_dir / "best"
    if not (best / "config.json").is_file():
        return
    model = BertForSequenceClassification.from_pretrained(str(best)).to(train_args.device)
    tokenizer = load_tokenizer(best)

    def predict(rows: list) -> dict:
        return predict_rows(model, rows, train_args.eval_batch_size, train_args.device,
                            tokenizer.pad_id, train_args.precision)

    options = dataclasses.replace(model_options(args))
    for path in predict_glue_test(model, predict, tokenizer, args.data_dir, args.glue_task,
                                  run_dir, options.max_length):
        print(f"wrote {path}")
