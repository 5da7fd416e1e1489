"""Entity-level NER scores as conlleval computes them, chunk extraction and tag-scheme conversion.

A tag is ``"O"`` or ``PREFIX-TYPE`` (``B-PER``). Schemes and their prefixes:

- ``IOB1``: I inside any chunk; B only on the first token of a chunk that directly follows
  a chunk of the same type.
- ``IOB2`` (alias ``BIO``): B on the first token of every chunk, I on the rest.
- ``IOBES`` (alias ``BIOES``): S for a one-token chunk; else B first, I middle, E last.
- ``BILOU``: IOBES with L for E and U for S.

Chunks are read with conlleval's lenient rules, whatever the scheme: a token continues the
open chunk exactly when its prefix is I or E, the previous token's prefix is B or I, and
the types agree. Any other non-O token starts a new chunk, so an I-X after O, after a chunk
of another type, or after an E/S starts a chunk; a chunk ends before O, B, S, a type change,
and after E or S. A predicted chunk is correct when a gold chunk has the same type, start
and end. Precision = correct / predicted chunks, recall = correct / gold chunks,
F1 = 2PR / (P + R) (0 when a denominator is 0); token accuracy compares whole tag strings.

Plain Python only: nothing here imports torch or the rest of bertforge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["SCHEMES", "convert_tags", "entity_scores", "get_entities"]

Entity = tuple[str, int, int]  # (type, first token index, last token index), both inclusive

# Canonical scheme name -> the prefixes it allows.
SCHEMES: dict[str, frozenset[str]] = {
    "IOB1": frozenset("BIO"),
    "IOB2": frozenset("BIO"),
    "IOBES": frozenset("BIOES"),
    "BILOU": frozenset("BILOU"),
}
_SCHEME_ALIASES = {"BIO": "IOB2", "BIOES": "IOBES"}
_TO_IOBES_PREFIX = {"L": "E", "U": "S"}  # BILOU letters read as their IOBES equivalents
_CONTINUING, _OPENING_ANY = frozenset("IE"), frozenset("BI")


# ----------------------------------------------------------------------------- tags
def _scheme(scheme: str) -> str:
    """Canonical name of ``scheme`` (any case), or ValueError listing the valid ones."""
    name = scheme.strip().upper()
    name = _SCHEME_ALIASES.get(name, name)
    if name not in SCHEMES:
        valid = ", ".join([*SCHEMES, *_SCHEME_ALIASES])
        raise ValueError(f"unknown tag scheme {scheme!r}; valid schemes: {valid}")
    return name


def _split_tag(tag: str, position: int, scheme: str) -> tuple[str, str]:
    """(prefix as in IOBES, type) of ``tag``; "O" gives ("O", ""), "B-PER" gives ("B", "PER").

    Splits at the first hyphen (types may hold hyphens); a tag without one is all prefix.
    """
    prefix, _, etype = tag.partition("-")
    if prefix not in SCHEMES[scheme]:
        allowed = ", ".join(sorted(SCHEMES[scheme]))
        raise ValueError(f"tag {tag!r} at position {position} is not valid in scheme {scheme} "
                         f"(allowed prefixes: {allowed})")
    if prefix == "O":
        return "O", ""
    return _TO_IOBES_PREFIX.get(prefix, prefix), etype


def get_entities(tags: Sequence[str], scheme: str = "IOB2") -> list[Entity]:
    """Chunks of one sentence's tags as (type, start, end) with ``end`` inclusive, in order.

    Uses conlleval's lenient chunk rules (see the module docstring), so ill-formed sequences
    such as ``O I-PER`` still yield a chunk. ``scheme`` only decides which prefixes are valid.
    """
    name = _scheme(scheme)
    entities: list[Entity] = []
    open_type: str | None = None
    open_start, prev_prefix = 0, "O"
    for i, tag in enumerate(tags):
        prefix, etype = _split_tag(tag, i, name)
        continues = (prefix in _CONTINUING and prev_prefix in _OPENING_ANY
                     and etype == open_type)
        if open_type is not None and not continues:
            entities.append((open_type, open_start, i - 1))
            open_type = None
        if prefix != "O" and not continues:
            open_type, open_start = etype, i
        prev_prefix = prefix
    if open_type is not None:
        entities.append((open_type, open_start, len(tags) - 1))
    return entities


# ----------------------------------------------------------------------------- conversion
def _tag(prefix: str, etype: str) -> str:
    """``PREFIX-TYPE``, or the bare prefix for a chunk without a type."""
    return f"{prefix}-{etype}" if etype else prefix


def _render(length: int, entities: Sequence[Entity], scheme: str) -> list[str]:
    """Tags of a ``length``-token sentence holding ``entities``, written in ``scheme``."""
    tags = ["O"] * length
    single, last = ("U", "L") if scheme == "BILOU" else ("S", "E")
    prev_type, prev_end = None, -2
    for etype, start, end in entities:
        inner = ["I"] * (end - start + 1)
        if scheme == "IOB1":
            touching = start == prev_end + 1 and etype == prev_type
            inner[0] = "B" if touching else "I"
        elif scheme == "IOB2":
            inner[0] = "B"
        elif start == end:
            inner[0] = single
        else:
            inner[0], inner[-1] = "B", last
        tags[start:end + 1] = [_tag(prefix, etype) for prefix in inner]
        prev_type, prev_end = etype, end
    return tags


def convert_tags(tags: Sequence[str], from_scheme: str, to_scheme: str) -> list[str]:
    """Rewrite one sentence's tags from one scheme (IOB1, IOB2/BIO, IOBES/BIOES, BILOU) to
    another, keeping the chunks that :func:`get_entities` reads.

    Well-formed input round-trips (IOB2 -> IOBES -> IOB2 is the identity); ill-formed input
    comes out well-formed, as conlleval would have read it.
    """
    return _render(len(tags), get_entities(tags, from_scheme), _scheme(to_scheme))


# ----------------------------------------------------------------------------- scores
def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from chunk counts, 0.0 wherever a denominator is 0."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _check_aligned(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    """Raise ValueError unless gold and pred have the same sentences of the same lengths."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    for s, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {s}: gold has {len(gold_tags)} tags but pred has "
                             f"{len(pred_tags)}")
    if not any(len(tags) for tags in gold):
        raise ValueError("no tokens to score: gold and pred are empty")


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                  scheme: str = "IOB2") -> dict[str, Any]:
    """conlleval's scores of predicted tag sequences against gold, one list per sentence.

    Returns fractions in [0, 1]: ``precision``, ``recall``, ``f1`` over all chunks (micro
    average), token ``accuracy``, and ``per_type``: for every type seen in gold or pred,
    ``{"precision", "recall", "f1", "support"}`` where support is the gold chunk count.
    """
    _check_aligned(gold, pred)
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_correct: Counter[str] = Counter()
    tokens = correct_tags = 0
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        gold_chunks, pred_chunks = get_entities(gold_tags, scheme), get_entities(pred_tags, scheme)
        n_gold.update(etype for etype, _, _ in gold_chunks)
        n_pred.update(etype for etype, _, _ in pred_chunks)
        n_correct.update(etype for etype, _, _ in set(gold_chunks) & set(pred_chunks))
        tokens += len(gold_tags)
        correct_tags += sum(g == p for g, p in zip(gold_tags, pred_tags, strict=True))
    precision, recall, f1 = _prf(n_correct.total(), n_pred.total(), n_gold.total())
    per_type = {}
    for etype in sorted(n_gold.keys() | n_pred.keys()):
        p, r, f = _prf(n_correct[etype], n_pred[etype], n_gold[etype])
        per_type[etype] = {"precision": p, "recall": r, "f1": f, "support": n_gold[etype]}
    return {"precision": precision, "recall": recall, "f1": f1,
            "accuracy": correct_tags / tokens, "per_type": per_type}
