"""SQuAD v1.1 and v2.0 evaluation: exact match and token F1, as the official scripts define them.

Definitions (evaluate-v1.1.py and evaluate-v2.0.py, re-implemented here):

- An answer is *normalised* by lower-casing it, deleting every ASCII punctuation character
  (``string.punctuation``), replacing the whole words "a", "an" and "the" by spaces, and
  collapsing runs of whitespace to single spaces (trimming the ends), in that order.
- *Exact match* is 1 when the normalised prediction equals the normalised gold answer.
- *F1* compares the multisets of whitespace tokens of the two normalised strings:
  overlap = Σ min(count in prediction, count in gold); precision = overlap / #prediction
  tokens, recall = overlap / #gold tokens, F1 = 2PR / (P + R); 0 when the overlap is 0.
  v2.0 differs in one case: when either side has no tokens, F1 is 1 if both are empty else 0.
- A question scores the maximum over its gold answers. Totals are percentages over questions.
- v2.0: a question with no gold answers is unanswerable, its one gold answer is "" (gold
  answers that normalise to "" are also dropped first). With no-answer probabilities,
  a prediction whose probability exceeds ``na_prob_thresh`` is replaced by "no answer", and
  the best threshold is searched for (``best_exact``/``best_f1`` and their thresholds).

Plain Python only: nothing here imports torch or the rest of bertforge.
"""

from __future__ import annotations

import re
import string
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["exact_match_score", "f1_score", "normalize_answer", "squad_evaluate"]

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_VERSIONS = ("1.1", "2.0")
Dataset = Sequence[Mapping[str, Any]] | Mapping[str, Any]


# ----------------------------------------------------------------------------- answer scores
def normalize_answer(text: str) -> str:
    """Lower-case, drop ``string.punctuation``, drop the words a/an/the, collapse whitespace."""
    without_punctuation = text.lower().translate(_DELETE_PUNCTUATION)
    without_articles = _ARTICLES.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised prediction equals the normalised gold answer, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str, version: str = "1.1") -> float:
    """Token F1 in [0, 1] between two answers after normalisation (bag-of-tokens overlap).

    Repeated tokens count as often as they occur on both sides (multiset intersection).
    ``version="2.0"`` scores two empty answers as 1.0 (v1.1 scores them 0.0).
    """
    _check_version(version)
    pred_counts = Counter(normalize_answer(prediction).split())
    return _token_f1(pred_counts, Counter(normalize_answer(ground_truth).split()), version)


def _token_f1(pred_counts: Counter[str], gold_counts: Counter[str], version: str) -> float:
    """Token F1 of two bags of normalised tokens (see :func:`f1_score`)."""
    if version == "2.0" and (not pred_counts or not gold_counts):
        return float(pred_counts == gold_counts)
    overlap = (pred_counts & gold_counts).total()
    if overlap == 0:
        return 0.0
    precision, recall = overlap / pred_counts.total(), overlap / gold_counts.total()
    return 2.0 * precision * recall / (precision + recall)


def _best_scores(prediction: str, golds: Sequence[str], version: str) -> tuple[float, float]:
    """(exact match, F1) of ``prediction``, each the maximum over the gold answers."""
    pred_norm = normalize_answer(prediction)
    pred_counts = Counter(pred_norm.split())
    exact = f1 = 0.0
    for gold in golds:
        gold_norm = normalize_answer(gold)
        exact = max(exact, float(pred_norm == gold_norm))
        f1 = max(f1, _token_f1(pred_counts, Counter(gold_norm.split()), version))
    return exact, f1


# ----------------------------------------------------------------------------- dataset
def _check_version(version: str) -> None:
    """Raise ValueError unless ``version`` is one of the two official SQuAD versions."""
    if version not in _VERSIONS:
        raise ValueError(f"unknown SQuAD version {version!r}; use one of {', '.join(_VERSIONS)}")


def _questions(dataset: Dataset) -> list[tuple[str, list[str]]]:
    """(question id, gold answer texts) for every question of an official SQuAD JSON dataset.

    ``dataset`` is the whole file's dict (with a ``"data"`` key) or its ``"data"`` list.
    """
    if isinstance(dataset, Mapping):
        if "data" not in dataset:
            raise ValueError("SQuAD dataset dict has no 'data' key: pass the official JSON file's"
                             " dict or its 'data' list")
        dataset = dataset["data"]
    questions = []
    for a, article in enumerate(dataset):
        try:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    questions.append((qa["id"], [ans["text"] for ans in qa["answers"]]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"SQuAD dataset article {a}: missing field {err}; expected "
                             "paragraphs[].qas[] with 'id' and 'answers'[].'text'") from err
    if not questions:
        raise ValueError("SQuAD dataset holds no questions")
    return questions


def _percent(scores: Mapping[str, float], qids: Sequence[str]) -> float:
    """Mean score over ``qids`` as a percentage."""
    return 100.0 * sum(scores[qid] for qid in qids) / len(qids)


# ----------------------------------------------------------------------------- v1.1
def _evaluate_v1(questions: list[tuple[str, list[str]]],
                 predictions: Mapping[str, str]) -> dict[str, float]:
    """evaluate-v1.1.py: mean best EM and F1 over all questions; a missing prediction scores 0."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, golds in questions:
        if not golds:
            raise ValueError(f"question {qid!r} has no gold answers, which SQuAD v1.1 cannot "
                             "score; evaluate with version='2.0'")
        prediction = predictions.get(qid)
        scores = (0.0, 0.0) if prediction is None else _best_scores(prediction, golds, "1.1")
        exact[qid], f1[qid] = scores
    missing = [qid for qid, _ in questions if qid not in predictions]
    if missing:
        warnings.warn(f"{len(missing)} of {len(questions)} questions have no prediction and score"
                      f" 0 (first: {missing[0]!r})", stacklevel=3)
    qids = [qid for qid, _ in questions]
    return {"exact_match": _percent(exact, qids), "f1": _percent(f1, qids)}


# ----------------------------------------------------------------------------- v2.0
def _raw_scores_v2(questions: list[tuple[str, list[str]]], predictions: Mapping[str, str]
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question best EM and F1 (v2.0 rules) before any no-answer threshold."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, golds in questions:
        golds = [gold for gold in golds if normalize_answer(gold)] or [""]
        exact[qid], f1[qid] = _best_scores(predictions[qid], golds, "2.0")
    return exact, f1


def _apply_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                     has_answer: Mapping[str, bool], threshold: float) -> dict[str, float]:
    """Scores after answering "no answer" wherever the no-answer probability exceeds
    ``threshold``: that scores 1 on an unanswerable question and 0 on an answerable one."""
    return {qid: float(not has_answer[qid]) if na_probs[qid] > threshold else score
            for qid, score in scores.items()}


def _best_threshold(scores: Mapping[str, float], predictions: Mapping[str, str],
                    na_probs: Mapping[str, float], has_answer: Mapping[str, bool]
                    ) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: (best total %, the threshold achieving it).

    Start with the threshold below every probability, so every question says "no answer"
    (scoring the number of unanswerable questions). Raise it past one question at a time in
    order of increasing probability (a stable sort, so ties keep ``na_probs`` order); each
    question passed gets its own prediction back: an answerable one adds its raw score, an
    unanswerable one loses 1 if its raw prediction string is non-empty (the official script
    tests the string itself, not its normalised form). Keep the first strict maximum.
    """
    total = float(sum(1 for qid in scores if not has_answer[qid]))
    best_total, best_thresh = total, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            total += scores[qid]
        elif predictions[qid]:
            total -= 1.0
        if total > best_total:
            best_total, best_thresh = total, na_probs[qid]
    return 100.0 * best_total / len(scores), best_thresh


def _check_complete(name: str, mapping: Mapping[str, Any], qids: Sequence[str],
                    hint: str) -> None:
    """Raise ValueError when ``mapping`` lacks any of ``qids``, naming how many and the first."""
    missing = [qid for qid in qids if qid not in mapping]
    if missing:
        raise ValueError(f"{name} lacks {len(missing)} of {len(qids)} question ids (first: "
                         f"{missing[0]!r}); {hint}")


def _breakdown(prefix: str, exact: Mapping[str, float], f1: Mapping[str, float],
               qids: Sequence[str]) -> dict[str, float]:
    """``{prefix}exact``, ``{prefix}f1`` and ``{prefix}total`` over ``qids`` (empty if none)."""
    if not qids:
        return {}
    return {f"{prefix}exact": _percent(exact, qids), f"{prefix}f1": _percent(f1, qids),
            f"{prefix}total": len(qids)}


def _evaluate_v2(questions: list[tuple[str, list[str]]], predictions: Mapping[str, str],
                 na_probs: Mapping[str, float] | None, na_prob_thresh: float) -> dict[str, float]:
    """evaluate-v2.0.py: overall, HasAns and NoAns EM/F1, and the best no-answer thresholds."""
    qids = [qid for qid, _ in questions]
    _check_complete("predictions", predictions, qids,
                    'SQuAD v2.0 scores every question: predict "" where there is no answer')
    if na_probs is not None:
        _check_complete("na_probs", na_probs, qids, "give a no-answer probability per question")
    probs = na_probs if na_probs is not None else dict.fromkeys(qids, 0.0)
    has_answer = {qid: bool(golds) for qid, golds in questions}
    exact_raw, f1_raw = _raw_scores_v2(questions, predictions)
    exact = _apply_threshold(exact_raw, probs, has_answer, na_prob_thresh)
    f1 = _apply_threshold(f1_raw, probs, has_answer, na_prob_thresh)
    result = _breakdown("", exact, f1, qids)
    result |= _breakdown("HasAns_", exact, f1, [q for q in qids if has_answer[q]])
    result |= _breakdown("NoAns_", exact, f1, [q for q in qids if not has_answer[q]])
    if na_probs is not None:
        best_exact, exact_thresh = _best_threshold(exact_raw, predictions, na_probs, has_answer)
        best_f1, f1_thresh = _best_threshold(f1_raw, predictions, na_probs, has_answer)
        result |= {"best_exact": best_exact, "best_exact_thresh": exact_thresh,
                   "best_f1": best_f1, "best_f1_thresh": f1_thresh}
    return result


def squad_evaluate(dataset: Dataset, predictions: Mapping[str, str],
                   na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0,
                   version: str = "1.1") -> dict[str, float]:
    """Score ``predictions`` (question id -> answer text) on an official SQuAD dataset.

    ``dataset`` is the official JSON file's dict or its ``"data"`` list. Scores are
    percentages in [0, 100].

    version "1.1" returns ``{"exact_match", "f1"}``, averaged over every question of the
    dataset; a question without a prediction scores 0 (with a warning).

    version "2.0" returns ``exact``, ``f1``, ``total``, then ``HasAns_*`` and ``NoAns_*``
    (each only when such questions exist) and, when ``na_probs`` (question id -> no-answer
    probability) is given, ``best_exact``, ``best_exact_thresh``, ``best_f1`` and
    ``best_f1_thresh``. Where ``na_probs[qid] > na_prob_thresh`` the prediction is taken as
    "no answer". Every question needs a prediction ("" for no answer).
    """
    _check_version(version)
    questions = _questions(dataset)
    if version == "1.1":
        if na_probs is not None:
            raise ValueError("na_probs applies to SQuAD v2.0 only; pass version='2.0'")
        return _evaluate_v1(questions, predictions)
    return _evaluate_v2(questions, predictions, na_probs, na_prob_thresh)
