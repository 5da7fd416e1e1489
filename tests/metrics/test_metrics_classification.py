"""Classification, correlation and multi-label metrics against scikit-learn and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertforge.metrics import (
    GLUE_TASKS,
    accuracy,
    binary_f1,
    glue_metrics,
    macro_f1,
    matthews_corrcoef,
    micro_f1,
    multilabel_macro_f1,
    multilabel_micro_f1,
    pearson,
    spearman,
    subset_accuracy,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference")
scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the reference")

TOL = 1e-12


def _random_labels(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions that agree with gold about half the time, classes 0..k-1."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, k, size=n)
    pred = np.where(rng.random(n) < 0.5, gold, rng.integers(0, k, size=n))
    return pred, gold


@pytest.mark.parametrize("seed,n,k", [(0, 50, 2), (1, 200, 3), (2, 333, 5), (3, 17, 7)])
def test_single_label_metrics_match_sklearn(seed: int, n: int, k: int) -> None:
    pred, gold = _random_labels(seed, n, k)
    assert accuracy(pred, gold) == pytest.approx(sklearn_metrics.accuracy_score(gold, pred),
                                                 abs=TOL)
    for average, ours in (("macro", macro_f1), ("micro", micro_f1)):
        ref = sklearn_metrics.f1_score(gold, pred, average=average)
        assert ours(pred, gold) == pytest.approx(ref, abs=TOL)
    ref_mcc = sklearn_metrics.matthews_corrcoef(gold, pred)
    assert matthews_corrcoef(pred, gold) == pytest.approx(ref_mcc, abs=TOL)


@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_f1_matches_sklearn(pos_label: int) -> None:
    pred, gold = _random_labels(10, 300, 2)
    ref = sklearn_metrics.f1_score(gold, pred, pos_label=pos_label)
    assert binary_f1(pred, gold, pos_label=pos_label) == pytest.approx(ref, abs=TOL)


def test_string_labels_and_restricted_classes() -> None:
    names = np.array(["contradiction", "entailment", "neutral"])
    pred_idx, gold_idx = _random_labels(4, 120, 3)
    pred, gold = list(names[pred_idx]), list(names[gold_idx])
    assert macro_f1(pred, gold) == pytest.approx(
        sklearn_metrics.f1_score(gold, pred, average="macro"), abs=TOL)
    subset = ["entailment", "neutral"]
    assert micro_f1(pred, gold, classes=subset) == pytest.approx(
        sklearn_metrics.f1_score(gold, pred, labels=subset, average="micro"), abs=TOL)
    assert matthews_corrcoef(pred, gold) == pytest.approx(
        sklearn_metrics.matthews_corrcoef(gold, pred), abs=TOL)


def test_binary_f1_without_positives_is_zero() -> None:
    # No positive prediction and no positive label: 0/0, scored 0.0 as scikit-learn does.
    assert binary_f1([0, 0, 0], [0, 0, 0]) == 0.0


@pytest.mark.parametrize(
    "pred,gold",
    [
        ([1, 1, 1, 1], [0, 1, 0, 1]),  # every prediction one class
        ([0, 1, 0, 1], [2, 2, 2, 2]),  # every label one class
        ([3, 3, 3], [3, 3, 3]),  # both constant and equal
        ([0], [1]),  # one item
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_mcc_degenerate_cases_are_zero_like_sklearn(pred: list[int], gold: list[int]) -> None:
    assert matthews_corrcoef(pred, gold) == 0.0
    assert sklearn_metrics.matthews_corrcoef(gold, pred) == 0.0


def test_mcc_perfect_and_inverted() -> None:
    assert matthews_corrcoef([0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, size=400)
    pred = gold + rng.normal(0, 1.5, size=400)
    ref = scipy_stats.pearsonr(pred, gold)[0]
    assert pearson(pred, gold) == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize("seed,levels", [(0, 4), (1, 6), (2, 1000)])
def test_spearman_with_ties_matches_scipy(seed: int, levels: int) -> None:
    # Few levels on a large sample: nearly every value is tied, so average ranks matter.
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, levels, size=300).astype(float)
    pred = np.round(gold + rng.normal(0, 1.0, size=300))
    ref = scipy_stats.spearmanr(pred, gold)[0]
    assert spearman(pred, gold) == pytest.approx(ref, abs=TOL)
    assert spearman(list(pred), list(gold)) == pytest.approx(ref, abs=TOL)


def test_correlation_of_constant_input_is_nan() -> None:
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))


def _random_indicator(seed: int, n: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 [n, labels] matrices; the last column is all zeros in both (an unused label)."""
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, labels)) < 0.3).astype(int)
    pred = np.where(rng.random((n, labels)) < 0.7, gold, 1 - gold)
    gold[:, -1] = 0
    pred[:, -1] = 0
    return pred, gold


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_metrics_match_sklearn(seed: int) -> None:
    pred, gold = _random_indicator(seed, 60, 6)
    for average, ours in (("micro", multilabel_micro_f1), ("macro", multilabel_macro_f1)):
        ref = sklearn_metrics.f1_score(gold, pred, average=average, zero_division=0.0)
        assert ours(pred, gold) == pytest.approx(ref, abs=TOL)
    assert subset_accuracy(pred, gold) == pytest.approx(
        sklearn_metrics.accuracy_score(gold, pred), abs=TOL)


def test_multilabel_rejects_non_binary_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_micro_f1([[0, 2]], [[0, 1]])
    with pytest.raises(ValueError, match="same shape"):
        subset_accuracy([[0, 1]], [[0, 1, 1]])


def test_glue_metrics_per_task() -> None:
    pred, gold = _random_labels(5, 100, 2)
    assert set(glue_metrics("CoLA", pred, gold)) == {"mcc"}
    for task in ("SST-2", "sst2", "QNLI", "RTE", "WNLI", "MNLI", "mnli-mm"):
        assert glue_metrics(task, pred, gold) == {"accuracy": accuracy(pred, gold)}
    for task in ("MRPC", "QQP"):
        out = glue_metrics(task, pred, gold)
        assert out["f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred), abs=TOL)
        assert out["acc_and_f1"] == pytest.approx((out["accuracy"] + out["f1"]) / 2, abs=TOL)
    scores = np.random.default_rng(6).uniform(0, 5, size=50)
    sts = glue_metrics("STS-B", scores + 0.5 * np.sin(scores), scores)
    assert set(sts) == {"pearson", "spearmanr", "corr"}
    assert sts["corr"] == pytest.approx((sts["pearson"] + sts["spearmanr"]) / 2, abs=TOL)


def test_glue_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'") as info:
        glue_metrics("squad", [0], [0])
    for task in GLUE_TASKS:
        assert task in str(info.value)


def test_mismatched_or_empty_inputs_raise() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        macro_f1([], [])
