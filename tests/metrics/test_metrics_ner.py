"""conlleval entity scores: hand cases, scheme conversion, and seqeval on real CoNLL-2003."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertforge.metrics import convert_tags, entity_scores, get_entities

CONLL_VALID = Path(__file__).parents[2].parent / "shared/data/conll2003/valid.txt"
TYPES = ("PER", "ORG", "LOC", "MISC")


# ----------------------------------------------------------------------------- chunks
@pytest.mark.parametrize(
    "tags,scheme,expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], "IOB2", [("PER", 0, 1), ("LOC", 3, 3)]),
        (["B-PER", "B-PER", "I-PER"], "BIO", [("PER", 0, 0), ("PER", 1, 2)]),
        # conlleval's lenient reading: an I after O or after another type starts a chunk
        (["O", "I-PER", "I-PER"], "IOB2", [("PER", 1, 2)]),
        (["B-PER", "I-LOC", "I-LOC"], "IOB2", [("PER", 0, 0), ("LOC", 1, 2)]),
        # IOB1: B only splits two touching chunks of one type
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1",
         [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]),
        # IOBES: S is a chunk alone; a chunk ends after E, so a second E starts a new one
        (["S-PER", "B-LOC", "I-LOC", "E-LOC", "E-LOC"], "IOBES",
         [("PER", 0, 0), ("LOC", 1, 3), ("LOC", 4, 4)]),
        (["S-PER", "I-PER", "E-PER"], "IOBES", [("PER", 0, 0), ("PER", 1, 2)]),
        (["U-PER", "B-LOC", "I-LOC", "L-LOC", "O"], "BILOU", [("PER", 0, 0), ("LOC", 1, 3)]),
        (["B-NAME-FULL", "I-NAME-FULL"], "IOB2", [("NAME-FULL", 0, 1)]),  # hyphen in type
        ([], "IOB2", []),
    ],
)
def test_get_entities(tags: list[str], scheme: str, expected: list[tuple[str, int, int]]
                      ) -> None:
    assert get_entities(tags, scheme) == expected


def test_invalid_prefix_and_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="'E-PER' at position 1 is not valid in scheme IOB2"):
        get_entities(["B-PER", "E-PER"], "IOB2")
    with pytest.raises(ValueError, match="unknown tag scheme 'IOE2'"):
        get_entities(["O"], "IOE2")


# ----------------------------------------------------------------------------- conversion
def test_convert_iob1_to_iob2_and_back() -> None:
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert convert_tags(iob1, "IOB1", "IOB2") == iob2
    assert convert_tags(iob2, "IOB2", "IOB1") == iob1


def test_convert_to_iobes_and_bilou() -> None:
    iob2 = ["B-PER", "I-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert convert_tags(iob2, "IOB2", "IOBES") == \
        ["B-PER", "I-PER", "E-PER", "S-PER", "O", "S-LOC"]
    assert convert_tags(iob2, "BIO", "BILOU") == \
        ["B-PER", "I-PER", "L-PER", "U-PER", "O", "U-LOC"]


def test_convert_repairs_ill_formed_iob2() -> None:
    assert convert_tags(["O", "I-PER", "I-LOC"], "IOB2", "IOB2") == ["O", "B-PER", "B-LOC"]


# ----------------------------------------------------------------------------- scores
def test_entity_scores_hand_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-MISC"]]
    # gold chunks PER, LOC, ORG; predicted PER, ORG(0,3), ORG, MISC; correct PER and ORG(1,0).
    out = entity_scores(gold, pred)
    assert (out["precision"], out["recall"]) == (0.5, 2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert out["accuracy"] == 4 / 6
    assert out["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "ORG": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }


def test_entity_scores_rejects_misaligned_input() -> None:
    with pytest.raises(ValueError, match="sentence 1: gold has 2 tags but pred has 1"):
        entity_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 sentences but pred has 1"):
        entity_scores([["O"], ["O"]], [["O"]])


# ----------------------------------------------------------------------------- CoNLL-2003
@pytest.fixture(scope="module")
def conll_gold() -> list[list[str]]:
    """The gold IOB2 NER tags (4th column) of CoNLL-2003 valid, one list per sentence."""
    if not CONLL_VALID.is_file():
        pytest.skip(f"CoNLL-2003 valid set not found at {CONLL_VALID} (shared data absent)")
    sentences: list[list[str]] = [[]]
    for line in CONLL_VALID.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            sentences.append([])
        else:
            sentences[-1].append(line.split()[3])
    return [s for s in sentences if s]


def _perturb_iob2(sentence: list[str], rng: np.random.Generator) -> list[str]:
    """A deterministic noisy prediction: swapped types, B dropped to I, shifted boundaries,
    stray I after O, and deleted tokens of chunks."""
    out = list(sentence)
    for i, tag in enumerate(sentence):
        r = rng.random()
        if tag == "O":
            if r < 0.03:  # a stray I-X after O (or extending a chunk one token)
                out[i] = "I-" + TYPES[rng.integers(len(TYPES))]
            continue
        prefix, etype = tag.split("-", 1)
        if r < 0.06:  # swap the type of this one token
            out[i] = f"{prefix}-{TYPES[(TYPES.index(etype) + 1) % len(TYPES)]}"
        elif r < 0.10 and prefix == "B":  # drop B to I
            out[i] = "I-" + etype
        elif r < 0.14:  # cut the token out of its chunk
            out[i] = "O"
        elif r < 0.18 and prefix == "B" and i > 0 and sentence[i - 1] == "O":
            out[i - 1], out[i] = "B-" + etype, "I-" + etype  # start one token early
    return out


def _perturb_iobes(sentence: list[str], rng: np.random.Generator) -> list[str]:
    """Random prefix changes among B/I/E/S (and type swaps) on IOBES tags."""
    out = list(sentence)
    for i, tag in enumerate(sentence):
        if tag != "O" and rng.random() < 0.15:
            etype = tag.split("-", 1)[1]
            if rng.random() < 0.3:
                etype = TYPES[rng.integers(len(TYPES))]
            out[i] = f"{'BIES'[rng.integers(4)]}-{etype}"
    return out


def _assert_same_as_seqeval(gold: list[list[str]], pred: list[list[str]], scheme: str) -> None:
    seqeval_metrics = pytest.importorskip("seqeval.metrics", reason="seqeval is the reference")
    ours = entity_scores(gold, pred, scheme=scheme)
    report = seqeval_metrics.classification_report(gold, pred, output_dict=True,
                                                   zero_division=0)
    micro = report["micro avg"]
    assert ours["precision"] == pytest.approx(micro["precision"], abs=1e-9)
    assert ours["recall"] == pytest.approx(micro["recall"], abs=1e-9)
    assert ours["f1"] == pytest.approx(micro["f1-score"], abs=1e-9)
    assert ours["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(gold, pred),
                                             abs=1e-12)
    ref_types = {k: v for k, v in report.items() if not k.endswith(" avg")}
    assert set(ours["per_type"]) == set(ref_types)
    for etype, ref in ref_types.items():
        got = ours["per_type"][etype]
        assert got["support"] == ref["support"]
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert got[key] == pytest.approx(ref[ref_key], abs=1e-9), (etype, key)
    # Chunk by chunk too, sentence by sentence.
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

    for tags in pred:
        assert get_entities(tags, scheme) == [tuple(e) for e in seqeval_entities(tags)]


def test_conll2003_iob2_matches_seqeval(conll_gold: list[list[str]]) -> None:
    assert len(conll_gold) == 3250
    rng = np.random.default_rng(2003)
    pred = [_perturb_iob2(s, rng) for s in conll_gold]
    out = entity_scores(conll_gold, pred)
    assert 0.5 < out["f1"] < 0.95  # the noise is real but not overwhelming
    _assert_same_as_seqeval(conll_gold, pred, "IOB2")


def test_conll2003_iobes_matches_seqeval(conll_gold: list[list[str]]) -> None:
    gold = [convert_tags(s, "IOB2", "IOBES") for s in conll_gold]
    rng = np.random.default_rng(2004)
    pred = [_perturb_iobes(s, rng) for s in gold]
    _assert_same_as_seqeval(gold, pred, "IOBES")


def test_conll2003_scheme_round_trips(conll_gold: list[list[str]]) -> None:
    for sentence in conll_gold:
        for scheme in ("IOBES", "IOB1", "BILOU"):
            there = convert_tags(sentence, "IOB2", scheme)
            assert get_entities(there, scheme) == get_entities(sentence, "IOB2")
            assert convert_tags(there, scheme, "IOB2") == sentence
