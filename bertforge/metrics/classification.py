"""Classification, regression and multi-label metrics, as GLUE and scikit-learn define them.

Every function takes ``predictions`` first and ``labels`` (the gold values) second, as
1-D sequences or arrays of the same length. Class labels may be any hashable values that
numpy can hold (ints, strings). Results are fractions in [0, 1] (correlations in [-1, 1]),
not percentages.

Plain Python and numpy only: nothing here imports torch or the rest of bertforge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "GLUE_TASKS",
    "accuracy",
    "binary_f1",
    "glue_metrics",
    "macro_f1",
    "matthews_corrcoef",
    "micro_f1",
    "multilabel_macro_f1",
    "multilabel_micro_f1",
    "pearson",
    "spearman",
    "subset_accuracy",
]


# ----------------------------------------------------------------------------- helpers
def _paired(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return both inputs as 1-D arrays, raising ValueError unless they are non-empty and equal
    in length."""
    pred, gold = np.asarray(predictions), np.asarray(labels)
    if pred.ndim != 1 or gold.ndim != 1:
        raise ValueError(
            f"predictions and labels must be 1-D, got shapes {pred.shape} and {gold.shape}"
        )
    if len(pred) != len(gold):
        raise ValueError(
            f"predictions and labels differ in length: {len(pred)} predictions, {len(gold)} labels"
        )
    if len(pred) == 0:
        raise ValueError("predictions and labels are empty; a metric needs at least one item")
    return pred, gold


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, zero_division: float
                    ) -> np.ndarray:
    """F1 = 2·TP / (2·TP + FP + FN) element-wise; ``zero_division`` where TP = FP = FN = 0."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2.0 * tp + fp + fn
    safe = np.where(denom > 0, denom, 1.0)
    return np.where(denom > 0, 2.0 * tp / safe, float(zero_division))


def _class_counts(pred: np.ndarray, gold: np.ndarray, classes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and false negatives, each of shape [C]."""
    is_pred = pred[None, :] == classes[:, None]  # [C, N]
    is_gold = gold[None, :] == classes[:, None]  # [C, N]
    tp = np.sum(is_pred & is_gold, axis=1)
    fp = np.sum(is_pred & ~is_gold, axis=1)
    fn = np.sum(~is_pred & is_gold, axis=1)
    return tp, fp, fn


def _classes(pred: np.ndarray, gold: np.ndarray, labels: Sequence | None) -> np.ndarray:
    """The classes to average over: ``labels`` when given, else every value seen (sorted)."""
    if labels is not None:
        classes = np.asarray(labels)
        if classes.ndim != 1 or len(classes) == 0:
            raise ValueError(f"labels must be a non-empty 1-D list of classes, got {labels!r}")
        return classes
    return np.unique(np.concatenate([gold, pred]))


# ----------------------------------------------------------------------------- single-label
def accuracy(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Fraction of items whose prediction equals the label: (1/N) Σ [pᵢ = yᵢ]."""
    pred, gold = _paired(predictions, labels)
    return float(np.mean(pred == gold))


def binary_f1(predictions: npt.ArrayLike, labels: npt.ArrayLike, pos_label: object = 1) -> float:
    """F1 of the positive class: 2·TP / (2·TP + FP + FN), with ``pos_label`` as positive.

    Every other value counts as negative. Returns 0.0 when there are no positive predictions
    and no positive labels (scikit-learn's ``zero_division`` default).
    """
    pred, gold = _paired(predictions, labels)
    is_pred, is_gold = pred == pos_label, gold == pos_label
    tp, fp, fn = np.sum(is_pred & is_gold), np.sum(is_pred & ~is_gold), np.sum(~is_pred & is_gold)
    return float(_f1_from_counts(tp, fp, fn, zero_division=0.0))


def macro_f1(predictions: npt.ArrayLike, labels: npt.ArrayLike,
             classes: Sequence | None = None) -> float:
    """Unweighted mean over classes of each class's one-vs-rest F1.

    ``classes`` defaults to every value seen in predictions or labels (scikit-learn's
    ``average="macro"``); a class with no predictions and no labels scores 0.0.
    """
    pred, gold = _paired(predictions, labels)
    tp, fp, fn = _class_counts(pred, gold, _classes(pred, gold, classes))
    return float(np.mean(_f1_from_counts(tp, fp, fn, zero_division=0.0)))


def micro_f1(predictions: npt.ArrayLike, labels: npt.ArrayLike,
             classes: Sequence | None = None) -> float:
    """F1 of the counts summed over classes: 2·ΣTP / (2·ΣTP + ΣFP + ΣFN).

    With every class included (the default) this equals accuracy; restricting ``classes``
    (e.g. leaving out a majority "other" class) makes it differ.
    """
    pred, gold = _paired(predictions, labels)
    tp, fp, fn = _class_counts(pred, gold, _classes(pred, gold, classes))
    return float(_f1_from_counts(tp.sum(), fp.sum(), fn.sum(), zero_division=0.0))


def matthews_corrcoef(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Matthews correlation coefficient, general K-class form (Gorodkin's R_K).

    With confusion matrix C (rows gold, columns predicted), s = N items, c = trace(C) correct,
    tₖ = row sums (gold count of class k), pₖ = column sums (predicted count of class k)::

        MCC = (c·s − Σₖ pₖtₖ) / sqrt((s² − Σₖ pₖ²) · (s² − Σₖ tₖ²))

    For two classes this is (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). Returns 0.0
    when the denominator is zero (all predictions, or all labels, one class), as scikit-learn.
    """
    pred, gold = _paired(predictions, labels)
    _, index = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    gold_idx, pred_idx = index[: len(gold)], index[len(gold):]
    num_classes = int(index.max()) + 1
    t = np.bincount(gold_idx, minlength=num_classes).astype(np.float64)
    p = np.bincount(pred_idx, minlength=num_classes).astype(np.float64)
    s, c = float(len(gold)), float(np.sum(gold_idx == pred_idx))
    cov_tp = c * s - float(np.dot(t, p))
    cov_pp = s * s - float(np.dot(p, p))
    cov_tt = s * s - float(np.dot(t, t))
    if cov_pp * cov_tt == 0.0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


# ----------------------------------------------------------------------------- correlation
def _as_float_pair(predictions: npt.ArrayLike, labels: npt.ArrayLike
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays of the same length (at least two items)."""
    x, y = (a.astype(np.float64) for a in _paired(predictions, labels))
    if len(x) < 2:
        raise ValueError("a correlation needs at least two items")
    return x, y


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two float arrays; NaN when either is constant."""
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(dx, dx) * np.dot(dy, dy))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(dx, dy) / denom, -1.0, 1.0))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values all get the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    first = last - counts + 1
    return ((first + last) / 2.0)[inverse.reshape(-1)]


def pearson(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Pearson correlation r = Σ(x−x̄)(y−ȳ) / sqrt(Σ(x−x̄)² · Σ(y−ȳ)²).

    Returns NaN when either input is constant (the coefficient is undefined; scipy agrees).
    """
    return _pearson(*_as_float_pair(predictions, labels))


def spearman(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Spearman rank correlation: Pearson's r of the ranks, ties given their average rank.

    Returns NaN when either input is constant.
    """
    x, y = _as_float_pair(predictions, labels)
    return _pearson(_average_ranks(x), _average_ranks(y))


# ----------------------------------------------------------------------------- multi-label
def _indicator_pair(predictions: npt.ArrayLike, labels: npt.ArrayLike
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as boolean [N, L] matrices (N items, L labels), checked to hold only 0/1."""
    pred, gold = np.asarray(predictions), np.asarray(labels)
    if pred.ndim != 2 or pred.shape != gold.shape or pred.size == 0:
        raise ValueError(
            "multi-label predictions and labels must be non-empty [items, labels] matrices of "
            f"the same shape, got {pred.shape} and {gold.shape}"
        )
    for name, matrix in (("predictions", pred), ("labels", gold)):
        if not np.all((matrix == 0) | (matrix == 1)):
            raise ValueError(f"multi-label {name} must hold only 0 and 1 (or False and True)")
    return pred.astype(bool), gold.astype(bool)


def _label_counts(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-label (column) TP, FP and FN of two boolean [N, L] matrices, each of shape [L]."""
    tp = np.sum(pred & gold, axis=0)
    fp = np.sum(pred & ~gold, axis=0)
    fn = np.sum(~pred & gold, axis=0)
    return tp, fp, fn


def multilabel_micro_f1(predictions: npt.ArrayLike, labels: npt.ArrayLike,
                        zero_division: float = 0.0) -> float:
    """F1 over every (item, label) cell of two 0/1 [N, L] matrices: 2·TP / (2·TP + FP + FN).

    ``zero_division`` is returned when both matrices are all zeros.
    """
    tp, fp, fn = _label_counts(*_indicator_pair(predictions, labels))
    return float(_f1_from_counts(tp.sum(), fp.sum(), fn.sum(), zero_division))


def multilabel_macro_f1(predictions: npt.ArrayLike, labels: npt.ArrayLike,
                        zero_division: float = 0.0) -> float:
    """Unweighted mean over the L columns of each column's F1, for 0/1 [N, L] matrices.

    A column with no positive predictions and no positive labels scores ``zero_division``
    (scikit-learn's default, 0.0) and still counts in the mean.
    """
    tp, fp, fn = _label_counts(*_indicator_pair(predictions, labels))
    return float(np.mean(_f1_from_counts(tp, fp, fn, zero_division)))


def subset_accuracy(predictions: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Fraction of rows of two 0/1 [N, L] matrices whose whole label set is predicted exactly."""
    pred, gold = _indicator_pair(predictions, labels)
    return float(np.mean(np.all(pred == gold, axis=1)))


# ----------------------------------------------------------------------------- GLUE
# The metrics GLUE reports per task (Wang et al., 2018; the leaderboard's columns).
GLUE_TASKS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst-2": ("accuracy",),
    "mrpc": ("f1", "accuracy", "acc_and_f1"),
    "sts-b": ("pearson", "spearmanr", "corr"),
    "qqp": ("f1", "accuracy", "acc_and_f1"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "ax": ("mcc",),  # the diagnostic set, scored by R3 (the K-class MCC)
}
_GLUE_ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "mnli-m": "mnli", "mnli-mm": "mnli",
                 "mnli-matched": "mnli", "mnli-mismatched": "mnli", "diagnostic": "ax"}


def _glue_task(task: str) -> str:
    """Canonical GLUE task name for ``task`` (any case, a few common spellings)."""
    name = task.strip().lower().replace("_", "-")
    name = _GLUE_ALIASES.get(name, name)
    if name not in GLUE_TASKS:
        raise ValueError(
            f"unknown GLUE task {task!r}; valid tasks: {', '.join(GLUE_TASKS)} "
            "(MNLI matched and mismatched are both 'mnli': score each split separately)"
        )
    return name


def glue_metrics(task: str, predictions: npt.ArrayLike, labels: npt.ArrayLike
                 ) -> dict[str, float]:
    """The metrics GLUE reports for ``task``, as fractions (not percentages).

    CoLA (and the diagnostic set AX): ``mcc``. SST-2, MNLI, QNLI, RTE, WNLI: ``accuracy``.
    MRPC, QQP: ``f1`` (positive class 1), ``accuracy`` and their mean ``acc_and_f1``.
    STS-B: ``pearson``, ``spearmanr`` and their mean ``corr`` (predictions are real scores).
    MNLI is one task here: call once for matched and once for mismatched.
    """
    name = _glue_task(task)
    if name in ("cola", "ax"):
        return {"mcc": matthews_corrcoef(predictions, labels)}
    if name in ("mrpc", "qqp"):
        acc, f1 = accuracy(predictions, labels), binary_f1(predictions, labels, pos_label=1)
        return {"f1": f1, "accuracy": acc, "acc_and_f1": (acc + f1) / 2.0}
    if name == "sts-b":
        r, rho = pearson(predictions, labels), spearman(predictions, labels)
        return {"pearson": r, "spearmanr": rho, "corr": (r + rho) / 2.0}
    return {"accuracy": accuracy(predictions, labels)}
