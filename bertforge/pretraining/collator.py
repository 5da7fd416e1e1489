"""``MaskingCollator``: instances -> padded torch batches, with dynamic masks drawn here.

This is the one module of ``bertforge.pretraining`` that imports torch, and only to
return tensors; the masks come from ``masking.draw_masks``, the same function that static
creation uses, so both follow the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from bertforge.pretraining.masking import MaskingRule, draw_masks
from bertforge.pretraining.npyio import offsets_from_lengths
from bertforge.tokenization import BertTokenizer

IGNORE_INDEX = -100


class MaskingCollator:
    """Pad a list of ``ShardDataset`` instances into a batch of torch int64 tensors.

    Returns ``input_ids`` [B, S], ``token_type_ids`` [B, S], ``attention_mask`` [B, S]
    (1 for real tokens), ``masked_positions`` [B, P] (P = most masks in the batch, padded
    with 0), ``masked_labels`` [B, P] (original ids, padded with -100) and
    ``next_sentence_label`` [B] (0 IsNext, 1 NotNext, -1 none). S is the longest instance,
    rounded up to ``pad_to_multiple_of``. Packed rows (instances with ``segment_starts``)
    also get ``sequence_ids`` [B, S]: 0, 1, ... for the row's segments, -1 at padding (the
    model keeps segments apart with it). Masks never fall on [CLS], [SEP] or [PAD], so
    never on a segment's ends either; a row's mask count follows the row's length.

    Instances that carry ``masked_positions`` (static masking) keep their stored masks;
    the others get masks drawn now (dynamic masking) with a numpy Generator owned by the
    collator: ``generator`` if given, else one seeded with ``seed``. ``state_dict()`` /
    ``load_state_dict()`` save and restore it for an exact resume. In DataLoader worker
    processes each worker reseeds once from (``seed``, worker id), so workers never repeat
    each other's masks; exact resume then needs collation in the main process
    (``num_workers=0``), which is cheap since the masking is vectorised.
    """

    def __init__(self, tokenizer_or_rule: BertTokenizer | MaskingRule,
                 max_predictions_per_seq: int = 20, masked_lm_prob: float = 0.15,
                 whole_word_mask: bool = False, pad_to_multiple_of: int | None = None,
                 seed: int | None = None, generator: np.random.Generator | None = None) -> None:
        if isinstance(tokenizer_or_rule, MaskingRule):
            rule = replace(tokenizer_or_rule, max_predictions_per_seq=max_predictions_per_seq,
                           masked_lm_prob=masked_lm_prob, whole_word_mask=whole_word_mask)
        else:
            rule = MaskingRule.from_tokenizer(tokenizer_or_rule, masked_lm_prob,
                                              max_predictions_per_seq, whole_word_mask)
        rule.check()
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
        self.rule = rule
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = generator if generator is not None else np.random.default_rng(seed)
        self._worker_id: int | None = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The generator's state (a plain dict, JSON-serialisable)."""
        return {"bit_generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from ``state_dict()``: the next batches' masks repeat exactly."""
        self.generator.bit_generator.state = state["bit_generator"]

    # ---------------------------------------------------------------- batches
    def __call__(self, instances: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        if not instances:
            raise ValueError("cannot collate an empty list of instances")
        self._reseed_in_worker()
        ids = [np.asarray(x["input_ids"], dtype=np.int64) for x in instances]
        positions, labels = self._masks(instances, ids)
        width = self._width(max(len(x) for x in ids))
        batch = {
            "input_ids": _pad([x for x in ids], width, self.rule.pad_id),
            "token_type_ids": _pad([np.asarray(x["token_type_ids"]) for x in instances],
                                   width, 0),
            "attention_mask": _pad([np.ones(len(x), np.int64) for x in ids], width, 0),
        }
        p = max((len(x) for x in positions), default=0)
        batch["masked_positions"] = _pad(positions, p, 0)
        batch["masked_labels"] = _pad(labels, p, IGNORE_INDEX)
        batch["next_sentence_label"] = np.array(
            [int(x["next_sentence_label"]) for x in instances], dtype=np.int64)
        if any("segment_starts" in x for x in instances):
            batch["sequence_ids"] = _pad([sequence_ids(len(row), x.get("segment_starts"))
                                          for row, x in zip(ids, instances, strict=True)],
                                         width, -1)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    def _masks(self, instances: Sequence[dict[str, np.ndarray]],
               ids: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Stored masks where present; fresh ones (applied to ``ids`` in place) elsewhere."""
        positions: list[np.ndarray] = [np.zeros(0, np.int64)] * len(ids)
        labels: list[np.ndarray] = [np.zeros(0, np.int64)] * len(ids)
        dynamic = [i for i, x in enumerate(instances) if "masked_positions" not in x]
        for i, x in enumerate(instances):
            if "masked_positions" in x:
                positions[i] = np.asarray(x["masked_positions"], dtype=np.int64)
                labels[i] = np.asarray(x["masked_labels"], dtype=np.int64)
        if dynamic:
            offsets = offsets_from_lengths(np.array([len(ids[i]) for i in dynamic]))
            draw = draw_masks(np.concatenate([ids[i] for i in dynamic]), offsets, self.rule,
                              self.generator)
            bounds = offsets_from_lengths(draw.counts)
            for j, i in enumerate(dynamic):
                ids[i] = draw.input_ids[offsets[j]:offsets[j + 1]]
                positions[i] = draw.positions[bounds[j]:bounds[j + 1]]
                labels[i] = draw.labels[bounds[j]:bounds[j + 1]].astype(np.int64)
        return positions, labels

    def _width(self, longest: int) -> int:
        m = self.pad_to_multiple_of
        return longest if not m else -(-longest // m) * m

    def _reseed_in_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_id != info.id:
            self._worker_id = info.id
            seq = np.random.SeedSequence(self.seed, spawn_key=(info.id,))
            self.generator = np.random.default_rng(seq)


def sequence_ids(length: int, segment_starts: np.ndarray | None) -> np.ndarray:
    """int64 [length]: which segment of a packed row each token is in (0 before the
    second start, 1 before the third, ...); all 0 without ``segment_starts``."""
    marks = np.zeros(length, dtype=np.int64)
    if segment_starts is not None and len(segment_starts) > 1:
        marks[np.asarray(segment_starts[1:], dtype=np.int64)] = 1
    return np.cumsum(marks)


def _pad(rows: Sequence[np.ndarray], width: int, value: int) -> np.ndarray:
    """Rows into an int64 [len(rows), width] array filled with ``value``."""
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
