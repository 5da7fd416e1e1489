"""SQuAD v1.1 / v2.0 evaluation: hand-worked cases and checks on the real v1.1 dev set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bertforge.metrics import exact_match_score, f1_score, normalize_answer, squad_evaluate

DEV_V11 = Path(__file__).parents[2].parent / "shared/data/squad-v1.1/dev-v1.1.json"


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    "text,expected",
    [
        ("The Quick, Brown fox!", "quick brown fox"),  # case, punctuation, leading article
        ("  a  b\tc\n", "b c"),  # article 'a' and every kind of whitespace
        ("theater an apple", "theater apple"),  # articles only as whole words
        ("AN", ""),  # lower-cased first, then removed
        ("the-end", "theend"),  # punctuation goes before articles: no word 'the' is left
        ("Anna's 1,000 (approx.)", "annas 1000 approx"),
        ("\u201cquoted\u201d", "\u201cquoted\u201d"),  # curly quotes are not string.punctuation
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_after_normalisation() -> None:
    assert exact_match_score("The Eiffel Tower", "eiffel   tower.") == 1.0
    assert exact_match_score("Eiffel Tower", "Eiffel Towers") == 0.0


@pytest.mark.parametrize(
    "prediction,gold,expected",
    [
        # tokens big/red/dog vs red/dog/cat: overlap 2, P = R = 2/3, F1 = 2/3
        ("big red dog", "red dog cat", 2 / 3),
        # 'a' dropped: [red, dog] vs [red, dog, barked]: P = 1, R = 2/3, F1 = 2·(2/3)/(5/3) = 0.8
        ("a red dog", "the red dog barked", 0.8),
        ("cat", "dog", 0.0),  # no overlap
        # repeated tokens count min(3, 2) = 2 times: P = 2/3, R = 2/3
        ("the cat cat cat", "cat cat dog", 2 / 3),
        # [new, york, new, york] vs [new, york]: overlap 2, P = 1/2, R = 1, F1 = 2/3
        ("New York, New York", "new york", 2 / 3),
    ],
)
def test_f1_score(prediction: str, gold: str, expected: float) -> None:
    assert f1_score(prediction, gold) == pytest.approx(expected, abs=1e-12)
    assert f1_score(gold, prediction) == pytest.approx(expected, abs=1e-12)  # symmetric


def test_f1_of_empty_answers_differs_between_versions() -> None:
    assert f1_score("", "") == 0.0  # v1.1: no common token, so 0
    assert f1_score("the", "", version="2.0") == 1.0  # v2.0: both empty after normalising
    assert f1_score("", "an answer", version="2.0") == 0.0


# ----------------------------------------------------------------------------- datasets
def _dataset(questions: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """A minimal official-format dataset with one article and one paragraph."""
    qas = [{"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
           for qid, golds in questions]
    return {"version": "test", "data": [{"title": "t", "paragraphs": [{"context": "",
                                                                       "qas": qas}]}]}


def test_v11_takes_the_best_gold_and_counts_missing_as_zero() -> None:
    data = _dataset([("q1", ["Denver Broncos", "the Broncos"]),
                     ("q2", ["red dog cat", "purple"]),
                     ("q3", ["anything"])])
    preds = {"q1": "broncos", "q2": "big red dog"}  # q3 unanswered
    with pytest.warns(UserWarning, match="1 of 3 questions have no prediction"):
        out = squad_evaluate(data, preds)
    # q1: EM 1 against 'the Broncos'. q2: EM 0, F1 2/3 against 'red dog cat'. q3: 0 and 0.
    assert out == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})
    assert squad_evaluate(data["data"], {**preds, "q3": "Anything!"})["exact_match"] == \
        pytest.approx(200 / 3)


def _v2_case() -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    """Two answerable and three unanswerable questions with no-answer probabilities."""
    data = _dataset([("q1", ["Paris"]), ("q2", ["the big red dog"]),
                     ("q3", []), ("q4", []), ("q5", [])])
    preds = {"q1": "Paris", "q2": "red dog cat", "q3": "", "q4": "something", "q5": "foo"}
    na_probs = {"q1": 0.1, "q2": 0.35, "q3": 0.3, "q4": 0.8, "q5": 0.4}
    return data, preds, na_probs


def test_v2_scores_and_best_threshold_worked_by_hand() -> None:
    data, preds, na_probs = _v2_case()
    # Raw scores (EM, F1): q1 (1, 1); q2 gold 'big red dog' vs 'red dog cat' (0, 2/3);
    # q3 '' on unanswerable (1, 1); q4, q5 answer an unanswerable question (0, 0).
    # At na_prob_thresh = 1.0 nothing is switched to "no answer":
    #   exact = 2/5 = 40 %, f1 = (1 + 2/3 + 1)/5 = 53.33 %,
    #   HasAns: exact 1/2, f1 (1 + 2/3)/2; NoAns: exact = f1 = 1/3.
    # Threshold search: start with every question "no answer" -> 3 (the unanswerable ones).
    # Raise the threshold past questions in order of na_prob:
    #   q1 (0.1) answerable, +score; q3 (0.3) prediction '' -> +0; q2 (0.35) +score;
    #   q5 (0.4) non-empty answer to unanswerable -> -1; q4 (0.8) -> -1.
    # EM running totals: 3 -> 4 (at 0.1) -> 4 -> 4 (+0) -> 3 -> 2: best 4/5 = 80 % at 0.1.
    # F1 running totals: 3 -> 4 (0.1) -> 4 -> 4.667 (0.35) -> 3.667 -> 2.667:
    #   best 4.667/5 = 93.33 % at 0.35.
    out = squad_evaluate(data, preds, na_probs=na_probs, version="2.0")
    expected = {
        "exact": 40.0, "f1": 100 * (8 / 3) / 5, "total": 5,
        "HasAns_exact": 50.0, "HasAns_f1": 100 * (5 / 3) / 2, "HasAns_total": 2,
        "NoAns_exact": 100 / 3, "NoAns_f1": 100 / 3, "NoAns_total": 3,
        "best_exact": 80.0, "best_exact_thresh": 0.1,
        "best_f1": 100 * (14 / 3) / 5, "best_f1_thresh": 0.35,
    }
    assert list(out) == list(expected)
    assert out == pytest.approx(expected, abs=1e-9)
    # Applying the best F1 threshold: q5 (0.4) and q4 (0.8) become "no answer" and score 1.
    at_best = squad_evaluate(data, preds, na_probs=na_probs, na_prob_thresh=0.35, version="2.0")
    assert at_best["exact"] == pytest.approx(80.0)
    assert at_best["f1"] == pytest.approx(out["best_f1"])


def test_v2_threshold_search_tests_the_raw_prediction_string() -> None:
    # evaluate-v2.0.py's find_best_thresh charges -1 for any non-empty prediction on an
    # unanswerable question, even 'The', which normalises to '' and scores EM 1 itself.
    # Start: 1 (one unanswerable). qn (0.1): 'The' is non-empty -> 0. qa (0.2): +1 -> 1,
    # not above 1, so best stays 1/2 = 50 % at threshold 0.0 while 'exact' is 100 %.
    data = _dataset([("qa", ["yes"]), ("qn", [])])
    out = squad_evaluate(data, {"qa": "Yes", "qn": "The"}, na_probs={"qa": 0.2, "qn": 0.1},
                         version="2.0")
    assert out["exact"] == 100.0
    assert (out["best_exact"], out["best_exact_thresh"]) == (50.0, 0.0)


def test_v2_without_na_probs_has_no_best_keys_and_drops_empty_golds() -> None:
    # A gold answer '.' normalises to '' and is dropped in v2.0, so '' does not match it.
    data = _dataset([("q1", ["Paris", "."]), ("q2", [])])
    out = squad_evaluate(data, {"q1": "", "q2": ""}, version="2.0")
    assert "best_exact" not in out
    assert (out["HasAns_exact"], out["NoAns_exact"], out["exact"]) == (0.0, 100.0, 50.0)


def test_errors_are_clear() -> None:
    data = _dataset([("q1", ["x"]), ("q2", [])])
    with pytest.raises(ValueError, match="predictions lacks 1 of 2"):
        squad_evaluate(data, {"q1": "x"}, version="2.0")
    with pytest.raises(ValueError, match="na_probs lacks 1 of 2"):
        squad_evaluate(data, {"q1": "x", "q2": ""}, na_probs={"q1": 0.5}, version="2.0")
    with pytest.raises(ValueError, match="no gold answers"):
        squad_evaluate(data, {"q1": "x", "q2": ""})
    with pytest.raises(ValueError, match="unknown SQuAD version"):
        squad_evaluate(data, {}, version="3")
    with pytest.raises(ValueError, match="'data' key"):
        squad_evaluate({"version": "1.1"}, {})


# ----------------------------------------------------------------------------- real dev set
@pytest.fixture(scope="module")
def dev_v11() -> dict[str, Any]:
    if not DEV_V11.is_file():
        pytest.skip(f"SQuAD v1.1 dev set not found at {DEV_V11} (shared data absent)")
    with DEV_V11.open(encoding="utf-8") as f:
        return json.load(f)


def _golds(dataset: dict[str, Any]) -> dict[str, list[str]]:
    return {qa["id"]: [a["text"] for a in qa["answers"]]
            for article in dataset["data"] for p in article["paragraphs"] for qa in p["qas"]}


def test_dev_v11_first_gold_scores_100(dev_v11: dict[str, Any]) -> None:
    golds = _golds(dev_v11)
    assert len(golds) == 10570
    first = {qid: answers[0] for qid, answers in golds.items()}
    assert squad_evaluate(dev_v11, first) == {"exact_match": 100.0, "f1": 100.0}
    v2 = squad_evaluate(dev_v11, first, version="2.0")
    assert (v2["exact"], v2["f1"], v2["HasAns_total"], "NoAns_total" in v2) == \
        (100.0, 100.0, 10570, False)
    # 'the ' in front is removed as an article: still every answer exact.
    prefixed = {qid: "the " + answer for qid, answer in first.items()}
    assert squad_evaluate(dev_v11, prefixed) == {"exact_match": 100.0, "f1": 100.0}


def test_dev_v11_empty_predictions_score_zero(dev_v11: dict[str, Any]) -> None:
    golds = _golds(dev_v11)
    empty = dict.fromkeys(golds, "")
    out = squad_evaluate(dev_v11, empty)
    assert out["f1"] == 0.0
    # v1.1 keeps gold answers that normalise to '' (three dev questions list '.' among their
    # answers), so '' is an exact match there, exactly as evaluate-v1.1.py scores it.
    with_empty_gold = sum(any(not normalize_answer(g) for g in gs) for gs in golds.values())
    assert with_empty_gold == 3
    assert out["exact_match"] == pytest.approx(100.0 * with_empty_gold / len(golds), abs=1e-12)
    # v2.0 drops such golds, so there the empty answer scores 0 everywhere.
    v2 = squad_evaluate(dev_v11, empty, version="2.0")
    assert (v2["exact"], v2["f1"]) == (0.0, 0.0)


def test_dev_v11_one_extra_word(dev_v11: dict[str, Any]) -> None:
    # Appending a word found in no gold answer to the first gold (n tokens once normalised)
    # gives n of n+1 predicted tokens right: P = n/(n+1), R = 1, F1 = 2n/(2n+1). No other
    # gold does better: with m gold tokens the overlap is at most min(n, m), and
    # 2·min(n, m)/(n+1+m) <= 2n/(2n+1). Exact match is 0 everywhere.
    extra = "zqxj"
    golds = _golds(dev_v11)
    assert not any(extra in normalize_answer(g) for gs in golds.values() for g in gs)
    lengths = [len(normalize_answer(gs[0]).split()) for gs in golds.values()]
    assert min(lengths) > 0
    expected_f1 = 100.0 * sum(2 * n / (2 * n + 1) for n in lengths) / len(lengths)
    out = squad_evaluate(dev_v11, {qid: gs[0] + " " + extra for qid, gs in golds.items()})
    assert out["exact_match"] == 0.0
    assert out["f1"] == pytest.approx(expected_f1, abs=1e-9)
    assert out["f1"] < 100.0
