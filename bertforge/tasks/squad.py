"""SQuAD v1.1 / v2.0: the official JSON -> examples -> sliding-window features -> answers.

Features: ``[CLS] question [SEP] context window [SEP]``, the question cut to
``max_query_length`` tokens, windows of the context's WordPiece tokens ``doc_stride``
apart so that every token is in some window (defaults 384 / 128 / 64, as the paper).
A token appearing in several windows is scored only in the window where it has the most
context: the largest ``min(tokens left, tokens right) + 0.01 * window length``.

Decoding: per window, the ``n_best`` highest start and end logits; a pair (s, e) is a
candidate when both are context tokens of the window, s <= e, e - s + 1 <=
``max_answer_length`` and s is at its maximum-context window; its score is
``start[s] + end[e]``. The answer text is the original context sliced from the first
character of token s to the last of token e (tokens keep character offsets into the
original text, so case, accents and spacing come back exactly). v2.0: the null score is
the smallest ``start[0] + end[0]`` over the windows; ``null_odds = null score - best
span score``; the answer is "" when ``null_odds`` exceeds the threshold.

Legend: S = sequence length, Q = question tokens, W = window tokens.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.tasks.common import Row, TaskDataError
from bertforge.tokenization import BertTokenizer


@dataclass
class SquadExample:
    """One question. ``answers``: (text, character start) pairs; empty when impossible."""

    qid: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)
    is_impossible: bool = False
    title: str = ""
    where: str = ""


@dataclass
class Context:
    """A paragraph's WordPiece tokens with character offsets into the original text."""

    ids: list[int]
    offsets: list[tuple[int, int]]


# ------------------------------------------------------------------ reading
def read_squad(path: str | os.PathLike, version: str = "1.1", skip_bad_answers: bool = False,
               articles: slice | None = None, labelled: bool = True) -> list[SquadExample]:
    """Every question of a SQuAD file (``articles`` picks a slice of the articles).

    An answer whose text is not at its ``answer_start`` is a TaskDataError naming the
    question, unless ``skip_bad_answers`` (then the question is left out of training).
    With ``labelled=False`` answers are ignored (questions to predict). A field of the
    wrong JSON type is a TaskDataError naming the file and where in it.
    """
    path = Path(path)
    data = _load_json(path)
    out: list[SquadExample] = []
    chosen = range(len(data))[articles or slice(None)]  # the file's own article numbers
    if articles is not None and not chosen:
        raise TaskDataError(f"{path}: the article slice {_slice_text(articles)} selects none of "
                            f"the file's {len(data)} articles; give a slice within 0:{len(data)}")
    for a in chosen:
        article = _expect(data[a], dict, f"{path}: data[{a}]")
        title = article.get("title", "")
        title = title if isinstance(title, str) else str(title)
        paragraphs = _expect(article.get("paragraphs", []), list, f"{path}: data[{a}].paragraphs")
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            out += _paragraph(_expect(paragraph, dict, where), where, title, version,
                              skip_bad_answers, labelled)
    return out


def _slice_text(articles: slice | None) -> str:
    """``slice(24, 48)`` -> ``"24:48"``."""
    if articles is None:
        return ":"
    return ":".join("" if x is None else str(x) for x in (articles.start, articles.stop))


def _expect(value: Any, kind: type, where: str) -> Any:
    """``value`` when it is a ``kind`` (dict or list), else a TaskDataError naming ``where``."""
    if not isinstance(value, kind):
        name = {dict: "a JSON object", list: "a JSON list"}[kind]
        raise TaskDataError(f"{where}: expected {name}, found {type(value).__name__}; is this "
                            "an official SQuAD file?")
    return value


def _paragraph(paragraph: dict[str, Any], where: str, title: str, version: str,
               skip_bad_answers: bool, labelled: bool) -> list[SquadExample]:
    context = paragraph.get("context")
    if not isinstance(context, str) or not context.strip():
        raise TaskDataError(f"{where}: empty or missing 'context'")
    out = []
    for q, qa in enumerate(_expect(paragraph.get("qas", []), list, f"{where}.qas")):
        qa = _expect(qa, dict, f"{where}.qas[{q}]")
        where_q = f"{where}.qas[{q}] (id {qa.get('id')})"
        example = _example(qa, context, title, version, where_q, labelled)
        if example is None and skip_bad_answers:
            continue
        if example is None:
            raise TaskDataError(f"{where_q}: answer text is not at its answer_start; "
                                "fix the offset or pass skip_bad_answers")
        out.append(example)
    return out


def _load_json(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SQuAD file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise TaskDataError(f"{path}:{line}: not valid UTF-8 (byte {err.start}); save the file "
                            "as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskDataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except (ValueError, RecursionError) as err:  # a 5000-digit number, deep nesting
        raise TaskDataError(f"{path}: JSON this reader refuses ({type(err).__name__}: "
                            f"{str(err)[:100]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise TaskDataError(f"{path}: expected a JSON object with a 'data' list (the official "
                            "SQuAD layout)")
    return data["data"]


def _example(qa: dict[str, Any], context: str, title: str, version: str, where: str,
             labelled: bool = True) -> SquadExample | None:
    """None when an answer does not match the context at its offset."""
    qid, question = qa.get("id"), qa.get("question")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
        raise TaskDataError(f"{where}: missing or empty field 'id' (a string)")
    if not isinstance(question, str) or not question.strip():
        raise TaskDataError(f"{where}: missing or empty field 'question' (a string)")
    if not labelled:
        return SquadExample(str(qid), question, context, [], False, title, where)
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise TaskDataError(f"{where}: is_impossible should be true or false, found "
                            f"{impossible!r}")
    if impossible and version == "1.1":
        raise TaskDataError(f"{where}: is_impossible in a v1.1 file; pass version 2.0")
    answers = []
    for k, answer in enumerate([] if impossible else _expect(qa.get("answers", []), list,
                                                             f"{where}.answers")):
        answer = _expect(answer, dict, f"{where}.answers[{k}]")
        text, start = answer.get("text", ""), answer.get("answer_start", -1)
        if not isinstance(text, str) or not text or isinstance(start, bool) \
                or not isinstance(start, int) or start < 0 \
                or context[start:start + len(text)] != text:
            return None
        answers.append((text, start))
    if not answers and not impossible:
        raise TaskDataError(f"{where}: no answers and not marked is_impossible")
    return SquadExample(str(qid), question, context, answers, impossible, title, where)


# ------------------------------------------------------------------ features
def tokenize_contexts(tokenizer: BertTokenizer, examples: Sequence[SquadExample]
                      ) -> dict[str, Context]:
    """Each distinct context's tokens, once (questions share paragraphs)."""
    backend = tokenizer.backend
    backend.no_truncation()
    backend.no_padding()
    unique = list(dict.fromkeys(e.context for e in examples))
    encoded = backend.encode_batch(unique, add_special_tokens=False)
    return {text: Context(list(enc.ids), [tuple(o) for o in enc.offsets])
            for text, enc in zip(unique, encoded, strict=True)}


def window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Start of each window of at most ``room`` tokens, ``stride`` apart, the last one
    reaching the end (Google's doc-span loop)."""
    starts, start = [], 0
    while True:
        starts.append(start)
        if start + room >= n_tokens:
            return starts
        start += min(room, stride)


def max_context_window(token: int, starts: Sequence[int], room: int, n_tokens: int) -> int:
    """Index of the window where ``token`` has the most context (ties: the earlier one)."""
    best, best_score = -1, -math.inf
    for w, start in enumerate(starts):
        length = min(room, n_tokens - start)
        if not start <= token < start + length:
            continue
        score = min(token - start, start + length - 1 - token) + 0.01 * length
        if score > best_score:
            best, best_score = w, score
    return best


def answer_tokens(context: Context, start_char: int, text: str) -> tuple[int, int]:
    """First and last context token covering the answer's characters."""
    end_char = start_char + len(text)
    starts = [i for i, (s, e) in enumerate(context.offsets) if e > start_char and s < end_char]
    if not starts:
        return -1, -1
    return starts[0], starts[-1]


def build_features(tokenizer: BertTokenizer, examples: Sequence[SquadExample],
                   max_seq_length: int = 384, doc_stride: int = 128, max_query_length: int = 64,
                   training: bool = False) -> list[Row]:
    """One row per window: ``input_ids``, ``token_type_ids``, ``example_index``,
    ``offsets`` [S] (character span of each context token, None elsewhere) and
    ``max_context`` [S] (bool); with ``training`` also ``start_positions`` and
    ``end_positions`` (the first answer; 0 = [CLS] when it is not inside the window)."""
    contexts = tokenize_contexts(tokenizer, examples)
    questions = tokenizer.tokenize_ids([e.question for e in examples])
    rows: list[Row] = []
    for index, example in enumerate(examples):
        query = questions[index][:max_query_length]
        room = max_seq_length - len(query) - 3
        if room < 1:
            raise TaskDataError(f"max_seq_length {max_seq_length} leaves no room for the "
                                f"context after a {len(query)}-token question")
        rows.extend(_windows(tokenizer, example, index, query, contexts[example.context],
                             room, doc_stride, training))
    return rows


def _windows(tokenizer: BertTokenizer, example: SquadExample, index: int, query: list[int],
             context: Context, room: int, stride: int, training: bool) -> list[Row]:
    n = len(context.ids)
    starts = window_starts(n, room, stride)
    best = [max_context_window(t, starts, room, n) for t in range(n)]
    answer = (answer_tokens(context, example.answers[0][1], example.answers[0][0])
              if training and example.answers else (-1, -1))
    head = [tokenizer.cls_id, *query, tokenizer.sep_id]
    rows = []
    for w, start in enumerate(starts):
        stop = min(start + room, n)
        ids = head + context.ids[start:stop] + [tokenizer.sep_id]
        pad = [None] * len(head)
        row: Row = {
            "input_ids": ids,
            "token_type_ids": [0] * len(head) + [1] * (stop - start + 1),
            "example_index": index,
            "offsets": pad + context.offsets[start:stop] + [None],
            "max_context": [False] * len(head) + [best[t] == w for t in range(start, stop)]
            + [False],
        }
        if training:
            row["start_positions"], row["end_positions"] = _positions(answer, start, stop,
                                                                      len(head))
        rows.append(row)
    return rows


def _positions(answer: tuple[int, int], start: int, stop: int, shift: int) -> tuple[int, int]:
    """Answer tokens as positions in the window's input, or (0, 0) when not inside."""
    first, last = answer
    if first < 0 or first < start or last >= stop:
        return 0, 0
    return first - start + shift, last - start + shift


# ------------------------------------------------------------------ decoding
@dataclass
class Candidate:
    text: str
    start_logit: float
    end_logit: float

    @property
    def score(self) -> float:
        return self.start_logit + self.end_logit


def _top(logits: np.ndarray, n: int) -> np.ndarray:
    return np.argsort(-logits, kind="stable")[:n]


def window_candidates(row: Row, start_logits: np.ndarray, end_logits: np.ndarray,
                      context: str, n_best: int, max_answer_length: int) -> list[Candidate]:
    """Valid spans of one window (see the module docstring). Logits: [S] for this row."""
    offsets, max_ctx = row["offsets"], row["max_context"]
    out = []
    for s in _top(start_logits, n_best):
        if s >= len(offsets) or offsets[s] is None or not max_ctx[s]:
            continue
        for e in _top(end_logits, n_best):
            if e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            text = context[offsets[s][0]:offsets[e][1]]
            out.append(Candidate(text, float(start_logits[s]), float(end_logits[e])))
    return out


@dataclass
class SquadPredictions:
    """Best answer, n-best lists and null odds (v2.0) per question id."""

    answers: dict[str, str]
    nbest: dict[str, list[dict[str, Any]]]
    null_odds: dict[str, float]


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    x = np.asarray(scores, dtype=np.float64)
    x = np.exp(x - x.max())
    return (x / x.sum()).tolist()


def decode(examples: Sequence[SquadExample], rows: Sequence[Row],
           start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
           n_best: int = 20, max_answer_length: int = 30, version: str = "1.1",
           null_threshold: float = 0.0) -> SquadPredictions:
    """Answers from per-row logits (one [S_i] array per row, in the rows' order)."""
    by_example: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_example.setdefault(row["example_index"], []).append(i)
    answers, nbest, odds = {}, {}, {}
    for index, example in enumerate(examples):
        features = by_example.get(index, [])
        candidates: list[Candidate] = []
        null = math.inf
        for i in features:
            candidates += window_candidates(rows[i], start_logits[i], end_logits[i],
                                            example.context, n_best, max_answer_length)
            null = min(null, float(start_logits[i][0] + end_logits[i][0]))
        answer, entries, diff = _choose(candidates, null, n_best, version, null_threshold)
        answers[example.qid], nbest[example.qid], odds[example.qid] = answer, entries, diff
    return SquadPredictions(answers, nbest, odds)


def _choose(candidates: list[Candidate], null: float, n_best: int, version: str,
            threshold: float) -> tuple[str, list[dict[str, Any]], float]:
    """(answer, n-best entries with probabilities, null odds) of one question."""
    ranked, seen = [], set()
    for c in sorted(candidates, key=lambda c: -c.score):
        if c.text not in seen:  # one entry per distinct answer text
            seen.add(c.text)
            ranked.append(c)
        if len(ranked) == n_best:
            break
    best_span = ranked[0] if ranked else Candidate("", 0.0, 0.0)
    entries = [{"text": c.text, "start_logit": c.start_logit, "end_logit": c.end_logit}
               for c in ranked]
    if version == "2.0" and math.isfinite(null):
        entries.append({"text": "", "start_logit": null / 2, "end_logit": null / 2})
        entries.sort(key=lambda e: -(e["start_logit"] + e["end_logit"]))
    if not entries:
        entries = [{"text": "", "start_logit": 0.0, "end_logit": 0.0}]
    for entry, p in zip(entries, _softmax([e["start_logit"] + e["end_logit"] for e in entries]),
                        strict=True):
        entry["probability"] = p
    diff = (null - best_span.score) if math.isfinite(null) and ranked else math.inf
    if version == "2.0" and diff > threshold:
        return "", entries, diff
    return best_span.text, entries, diff


def apply_null_threshold(predictions: SquadPredictions, threshold: float) -> dict[str, str]:
    """v2.0 answers with a new threshold: "" where ``null_odds`` > ``threshold``, else the best
    non-null n-best entry."""
    out = {}
    for qid, entries in predictions.nbest.items():
        spans = [e["text"] for e in entries if e["text"]]
        keep = predictions.null_odds[qid] <= threshold and spans
        out[qid] = spans[0] if keep else ""
    return out


def to_official(examples: Sequence[SquadExample]) -> list[dict[str, Any]]:
    """Examples back in the official ``data`` layout (one paragraph per question), for the
    official evaluation definitions in ``bertforge.metrics.squad_evaluate``."""
    return [{"title": e.title, "paragraphs": [{"context": e.context, "qas": [{
        "id": e.qid, "question": e.question, "is_impossible": e.is_impossible,
        "answers": [{"text": t, "answer_start": s} for t, s in e.answers]}]}]}
        for e in examples]
