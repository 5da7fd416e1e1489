"""``bertforge predict TASK --model FINETUNED --input FILE --out DIR``: predictions only.

- glue: ``--glue-task T --data-dir DIR``: the GLUE submission files of the test split(s).
- classify: a CSV/TSV/JSONL file -> ``predictions.jsonl`` (label and class probabilities).
- squad: a SQuAD JSON file -> ``predictions.json``, ``nbest_predictions.json``,
  ``null_odds.json`` (v2.0).
- ner: a CoNLL file (tags optional) -> ``predictions.conll``.
- multiple-choice: a SWAG-style file -> ``predictions.jsonl`` (choice and probabilities).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bertforge.cli.finetune import add_data_arguments, model_options, need
from bertforge.inference.batching import PROGRESS_MIN
from bertforge.inference.common import resolve_device
from bertforge.interop.checkpoint import config_from
from bertforge.tasks.common import LabelMap
from bertforge.training.finetune import predict_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--input", help="file to predict (not for glue)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA if any)")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def run(args: argparse.Namespace) -> int:
    need(args, "model", "out")
    if args.task != "glue":
        need(args, "input")
    args.device = str(resolve_device(args.device))
    out = Path(args.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    handlers = {"glue": _glue, "classify": _classify, "squad": _squad, "ner": _ner,
                "multiple-choice": _choice}
    try:
        written = handlers[args.task](args, out)
    except BaseException:
        if created and not any(out.iterdir()):  # a failed run leaves no empty --out behind
            out.rmdir()
        raise
    for path in written:
        print(f"wrote {path}")
    return 0


def _predictor(model: object, args: argparse.Namespace, pad_id: int) -> object:
    """rows -> predict_rows' outputs, under a progress bar on stderr from 512 rows."""
    model = model.to(args.device).eval()
    return lambda rows: predict_rows(model, rows, args.batch_size, args.device, pad_id,
                                     progress=len(rows) >= PROGRESS_MIN,
                                     desc=f"predict {args.task}")


def _trained(cls: type, path: str) -> object:
    """``cls`` loaded from ``path``, refusing a checkpoint that lacks the task's trained
    weights: predictions from a head initialised at random would look valid and be noise."""
    import warnings

    with warnings.catch_warnings():  # the random-initialisation warning: refused below
        warnings.filterwarnings("ignore", message=".*initialised at random")
        model = cls.from_pretrained(path)
    missing = list(getattr(model, "new_weights", ()))
    head_file = getattr(cls, "HEAD_FILE", None)
    if head_file and not (Path(path) / head_file).is_file():
        missing.append(head_file)
    if missing:
        archs = ", ".join(config_from(path).extra.get("architectures") or ["none named"])
        raise ValueError(f"{path}: not a fine-tuned {cls.__name__} (config.json architectures: "
                         f"{archs}); it has no {', '.join(missing[:4])}; predict needs a model "
                         "fine-tuned for this task (as 'bertforge finetune' writes)")
    return model


def _label_map(config: object, width: int) -> LabelMap:
    """config.json's id2label, else LABEL_0 … LABEL_{K-1} as transformers names them."""
    names = config.id2label or {}
    return LabelMap([str(names.get(i, f"LABEL_{i}")) for i in range(width)])


def _glue(args: argparse.Namespace, out: Path) -> list[Path]:
    from bertforge.model.task_heads import BertForSequenceClassification
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import predict_glue_test
    need(args, "glue_task", "data_dir")
    model = _trained(BertForSequenceClassification, args.model)
    tokenizer = load_tokenizer(args.model)
    return predict_glue_test(model, _predictor(model, args, tokenizer.pad_id), tokenizer,
                             args.data_dir, args.glue_task, out, model_options(args).max_length)


def _classify(args: argparse.Namespace, out: Path) -> list[Path]:
    from bertforge.model.task_heads import BertForSequenceClassification
    from bertforge.tasks.classify import Columns, read_classification
    from bertforge.tasks.features import encode_examples
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import decide, label_names, write_jsonl
    model = _trained(BertForSequenceClassification, args.model)
    tokenizer = load_tokenizer(args.model)
    problem = {"regression": "regression", "multi_label_classification": "multi_label"}.get(
        model.config.problem_type or "", "single_label")
    columns = Columns(args.text_column, args.text_pair_column, None, args.id_column)
    examples = read_classification(args.input, columns, problem, labelled=False)
    rows = encode_examples(tokenizer, examples, model_options(args).max_length, None, problem)
    logits = np.stack(_predictor(model, args, tokenizer.pad_id)(rows)["logits"])
    labels = _label_map(model.config, logits.shape[-1])
    names = label_names(decide(logits, problem), labels, problem)
    probs = (1 / (1 + np.exp(-logits)) if problem == "multi_label" else _softmax(logits))
    path = out / "predictions.jsonl"
    write_jsonl(path, ({"id": e.guid, "prediction": n,
                        **({} if problem == "regression" else
                           {"probabilities": dict(zip(labels.names, map(float, p),
                                                      strict=True))})}
                       for e, n, p in zip(examples, names, probs, strict=True)))
    return [path]


def _squad(args: argparse.Namespace, out: Path) -> list[Path]:
    from bertforge.model.task_heads import BertForQuestionAnswering
    from bertforge.tasks.squad import decode, read_squad
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune import EvalResult
    from bertforge.training.finetune_squad import SquadOptions, features, write_squad_predictions
    model = _trained(BertForQuestionAnswering, args.model)
    tokenizer = load_tokenizer(args.model)
    options = SquadOptions(args.version, model_options(args).max_length, args.doc_stride,
                           args.max_query_length, args.n_best, args.max_answer_length,
                           args.null_threshold)
    examples = read_squad(args.input, args.version, labelled=False)
    rows = features(tokenizer, examples, options, training=False)
    outputs = _predictor(model, args, tokenizer.pad_id)(rows)
    found = decode(examples, rows, outputs["start_logits"], outputs["end_logits"],
                   options.n_best, options.max_answer_length, options.version,
                   options.null_threshold)
    write_squad_predictions(out, EvalResult({}, found), args.version)
    return [out / "predictions.json"]


def _ner(args: argparse.Namespace, out: Path) -> list[Path]:
    from bertforge.model.task_heads import BertFeatureTagger, BertForTokenClassification
    from bertforge.tasks import ner
    from bertforge.tokenization import load_tokenizer
    extra = config_from(args.model).extra
    cls = BertFeatureTagger if "feature_tagger" in extra else BertForTokenClassification
    model = _trained(cls, args.model)
    tokenizer = load_tokenizer(args.model)
    labels = _label_map(model.config, model.head.classifier.out_features)
    sentences = ner.read_conll(args.input, labelled=False)
    rows = ner.build_features(tokenizer, sentences, model_options(args).max_length, None)
    logits = _predictor(model, args, tokenizer.pad_id)(rows)["logits"]
    path = out / "predictions.conll"
    ner.write_conll(path, sentences, ner.decode_tags(sentences, rows, logits, labels))
    return [path]


def _choice(args: argparse.Namespace, out: Path) -> list[Path]:
    from bertforge.model.task_heads import BertForMultipleChoice
    from bertforge.tasks import multiple_choice as mc
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.finetune_tasks import write_jsonl
    model = _trained(BertForMultipleChoice, args.model)
    tokenizer = load_tokenizer(args.model)
    examples = mc.read_choices(args.input, labelled=False)
    rows = mc.build_features(tokenizer, examples, model_options(args).max_length)
    probs = _softmax(np.stack(_predictor(model, args, tokenizer.pad_id)(rows)["logits"]))
    path = out / "predictions.jsonl"
    write_jsonl(path, ({"id": e.guid, "prediction": int(p.argmax()),
                        "probabilities": [float(x) for x in p]}
                       for e, p in zip(examples, probs, strict=True)))
    return [path]
