"""Masked-LM masks drawn in numpy: one function for static creation and dynamic batches.

The rules (BERT's): each instance of length ``L`` (counting [CLS] and [SEP]) gets exactly
``min(max_predictions_per_seq, max(1, round(L * masked_lm_prob)))`` masked positions
(fewer only if it has fewer maskable tokens), never at [CLS], [SEP] or [PAD]. A chosen
position becomes [MASK] with probability 0.8, a uniformly random vocabulary id with 0.1,
and keeps its token with 0.1. With whole-word masking the positions are chosen a word at
a time (a word is a token plus the ``##`` pieces after it): words are taken in random
order, skipping any that would overshoot the count.

All instances of a batch are handled together: ``ids`` holds them back to back and
``offsets`` [N + 1] says where each starts, so the work is a few array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertforge.pretraining.npyio import ragged_ranges
from bertforge.tokenization import BertTokenizer

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # the rest keeps its token


@dataclass(frozen=True)
class MaskingRule:
    """What a mask draw needs to know about the vocabulary, and the masking parameters.

    ``continuation`` is bool [vocab_size], true for ``##`` pieces (whole-word masking).
    """

    vocab_size: int
    mask_id: int
    never_mask: tuple[int, ...]
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_mask: bool = False
    continuation: np.ndarray | None = None
    pad_id: int = 0

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTokenizer, masked_lm_prob: float = 0.15,
                       max_predictions_per_seq: int = 20,
                       whole_word_mask: bool = False) -> MaskingRule:
        """The rule for ``tokenizer``'s vocabulary; a clear error (naming the vocabulary
        file) when it lacks [CLS], [SEP] or [MASK]."""
        never = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
        cont = np.zeros(tokenizer.vocab_size, dtype=bool)
        for token, i in tokenizer.vocab.items():
            cont[i] = token.startswith("##")
        return cls(tokenizer.vocab_size, tokenizer.mask_id, never, masked_lm_prob,
                   max_predictions_per_seq, whole_word_mask, cont, tokenizer.pad_id)

    def check(self) -> None:
        """Raise ValueError naming the parameter when a value is out of range."""
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if self.max_predictions_per_seq < 1:
            raise ValueError("max_predictions_per_seq must be at least 1, got "
                             f"{self.max_predictions_per_seq}")


@dataclass
class MaskDraw:
    """The result of ``draw_masks`` for N instances with M masked positions in all."""

    input_ids: np.ndarray  # [T], the instances with masks applied (same dtype as given)
    positions: np.ndarray  # int64 [M], position within its instance, ascending per instance
    labels: np.ndarray  # [M], the original ids at those positions
    counts: np.ndarray  # int64 [N], masked positions per instance


def num_to_mask(lengths: np.ndarray, rule: MaskingRule) -> np.ndarray:
    """BERT's count per instance: min(max_predictions, max(1, round(L * prob))), int64 [N]."""
    wanted = np.rint(np.asarray(lengths, dtype=np.float64) * rule.masked_lm_prob)
    return np.minimum(rule.max_predictions_per_seq, np.maximum(1, wanted)).astype(np.int64)


def draw_masks(ids: np.ndarray, offsets: np.ndarray, rule: MaskingRule,
               rng: np.random.Generator) -> MaskDraw:
    """Draw masks for the instances ``ids[offsets[i]:offsets[i + 1]]`` (see module doc)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    inst = np.repeat(np.arange(len(lengths)), lengths)
    maskable = ~np.isin(ids, rule.never_mask)
    available = np.bincount(inst[maskable], minlength=len(lengths))
    k = np.minimum(num_to_mask(lengths, rule), available)
    if rule.whole_word_mask:
        chosen = _choose_words(ids, inst, maskable, k, rule, rng)
    else:
        chosen = _choose_tokens(inst, maskable, offsets, k, rng)
    labels = np.asarray(ids[chosen])
    u = rng.random(len(chosen))
    random_ids = rng.integers(0, rule.vocab_size, len(chosen))
    replaced = np.where(u < MASK_SHARE, rule.mask_id,
                        np.where(u < MASK_SHARE + RANDOM_SHARE, labels, random_ids))
    out = np.array(ids, copy=True)
    out[chosen] = replaced
    owner = inst[chosen]
    return MaskDraw(out, chosen - offsets[owner], labels,
                    np.bincount(owner, minlength=len(lengths)))


def _choose_tokens(inst: np.ndarray, maskable: np.ndarray, offsets: np.ndarray,
                   k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k[i] uniformly random maskable flat positions of each instance, sorted: the k[i]
    smallest of random keys, found by sorting each row of an [N, max length] key table."""
    lengths = np.diff(offsets)
    n, width = len(lengths), int(lengths.max(initial=1))
    pos = np.arange(len(inst)) - offsets[inst]  # position within its instance
    keys = rng.random((n, width), dtype=np.float32)
    valid = np.zeros((n, width), dtype=bool)
    valid[inst, pos] = maskable
    keys[~valid] = 2.0  # after every maskable token of the row
    kmax = int(k.max(initial=0))
    first = np.argsort(keys, axis=1)[:, :kmax]  # [N, kmax], ascending keys
    take = np.arange(kmax)[None, :] < k[:, None]
    return np.sort((offsets[:-1, None] + first)[take])


def _choose_words(ids: np.ndarray, inst: np.ndarray, maskable: np.ndarray, k: np.ndarray,
                  rule: MaskingRule, rng: np.random.Generator) -> np.ndarray:
    """Whole words, in random order, skipping a word that would overshoot k[i]; sorted
    flat positions of their tokens."""
    piece = np.zeros(len(ids), dtype=bool)
    if rule.continuation is not None:
        piece = rule.continuation[np.asarray(ids, dtype=np.int64)] & maskable
    joins = np.zeros(len(ids), dtype=bool)  # continues the word of the token before it
    joins[1:] = piece[1:] & maskable[:-1] & (inst[1:] == inst[:-1])
    starts = np.flatnonzero(maskable & ~joins)
    word_of = np.cumsum(maskable & ~joins) - 1
    word_len = np.bincount(word_of[maskable], minlength=len(starts))
    word_inst = inst[starts]
    order = np.lexsort((rng.random(len(starts)), word_inst))
    take = _greedy_words(word_len[order], word_inst[order], k)
    words = np.sort(order[take])
    return ragged_ranges(starts[words], word_len[words])


def _greedy_words(lens: np.ndarray, owner: np.ndarray, k: np.ndarray) -> np.ndarray:
    """For words in shuffled order grouped by instance (``owner`` ascending): take each word
    that still fits its instance's budget k. Returns bool [W]."""
    first = np.searchsorted(owner, np.arange(len(k) + 1))
    cum = np.cumsum(lens)
    before = np.concatenate([[0], cum])[first[:-1]]
    take = (cum - before[owner]) <= k[owner]  # the prefix that fits (vectorised)
    got = np.bincount(owner[take], weights=lens[take], minlength=len(k)).astype(np.int64)
    for i in np.flatnonzero(got < k).tolist():  # rare: a long word overshot; keep going
        budget = int(k[i] - got[i])
        for w in range(int(first[i]), int(first[i + 1])):
            if not take[w] and lens[w] <= budget:
                take[w] = True
                budget -= int(lens[w])
                if budget == 0:
                    break
    return take
