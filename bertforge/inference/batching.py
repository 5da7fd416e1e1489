"""Length-sorted batching: encode once, group inputs of similar length, pad per batch.

Sorting by length before batching means a batch pads only to its own longest input, so
almost no compute goes to padding; callers put each batch's outputs back at
``Batch.indices`` so that results come out in input order.

Legend: B = batch size, S = longest sequence in the batch (tokens).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from bertforge.inference.common import InferenceError
from bertforge.tokenization import BertTokenizer, Encoding

CHUNK = 4096  # inputs tokenised and sorted together; bounds memory on huge files
PROGRESS_MIN = 512  # inputs from which a progress bar appears (when wanted)


@dataclass
class Batch:
    """One padded batch. ``indices[r]`` is the input position of row r."""

    indices: list[int]
    input_ids: torch.Tensor  # [B, S] int64
    token_type_ids: torch.Tensor  # [B, S] int64
    attention_mask: torch.Tensor  # [B, S] int64, 1 = real token

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per row, [B]."""
        return self.attention_mask.sum(1)

    @property
    def padding_fraction(self) -> float:
        """Share of the [B, S] positions that are padding."""
        return 1.0 - float(self.attention_mask.sum()) / max(self.attention_mask.numel(), 1)


def encode_inputs(tokenizer: BertTokenizer, texts: Sequence[str],
                  pairs: Sequence[str | None] | None, max_length: int
                  ) -> tuple[list[Encoding], list[int]]:
    """Encode ``[CLS] a [SEP] (b [SEP])`` cut to ``max_length`` tokens; also returns the
    positions of the inputs that had to be cut (counted on the uncut token lengths).
    ``pairs[i]`` None means input i is a single segment."""
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
    if pairs is not None and any(p is None for p in pairs):
        return _encode_mixed(tokenizer, texts, pairs, max_length)
    return tokenizer.encode_each(texts, pairs, max_length=max_length)


def _encode_mixed(tokenizer: BertTokenizer, texts: Sequence[str],
                  pairs: Sequence[str | None], max_length: int
                  ) -> tuple[list[Encoding], list[int]]:
    """Some inputs are pairs, some single: encode the two groups apart, then interleave."""
    paired = [i for i, p in enumerate(pairs) if p is not None]
    single = [i for i, p in enumerate(pairs) if p is None]
    out: list = [None] * len(texts)
    truncated: list[int] = []
    for group, group_pairs in ((paired, [pairs[i] for i in paired]), (single, None)):
        if not group:
            continue
        encodings, cut = encode_inputs(tokenizer, [texts[i] for i in group], group_pairs,
                                       max_length)
        for i, enc in zip(group, encodings, strict=True):
            out[i] = enc
        truncated += [group[j] for j in cut]
    return out, sorted(truncated)


def sorted_batches(lengths: Sequence[int], batch_size: int,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Input positions grouped into batches of similar length, longest first (so running
    out of memory happens at once, not at the end). A batch holds at most ``batch_size``
    inputs and, with ``max_tokens``, at most that many padded tokens (B * S)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        full = len(current) >= batch_size or (
            max_tokens is not None and current and (len(current) + 1) * lengths[current[0]]
            > max_tokens)
        if full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(encodings: Sequence[Encoding], indices: list[int], pad_id: int,
            device: torch.device) -> Batch:
    """Pad the chosen encodings to their longest into [B, S] tensors on ``device``."""
    width = max(len(encodings[i]) for i in indices)
    ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, i in enumerate(indices):
        enc = encodings[i]
        n = len(enc)
        ids[row, :n], types[row, :n], mask[row, :n] = enc.ids, enc.type_ids, 1

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device, non_blocking=True)

    return Batch(indices, put(ids), put(types), put(mask))


def iter_batches(encodings: Sequence[Encoding], batch_size: int, pad_id: int,
                 device: torch.device, max_tokens: int | None = None) -> Iterator[Batch]:
    """Length-sorted, padded batches over ``encodings``."""
    lengths = [len(e) for e in encodings]
    for indices in sorted_batches(lengths, batch_size, max_tokens):
        yield collate(encodings, indices, pad_id, device)


def chunks(n: int, size: int = CHUNK) -> Iterator[range]:
    """``range(n)`` in consecutive pieces of at most ``size``."""
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def progress_bar(total: int, desc: str, enabled: bool | None = None) -> tqdm:
    """A tqdm bar on stderr counting inputs. ``enabled=None``: only for long inputs."""
    show = total >= PROGRESS_MIN if enabled is None else enabled
    return tqdm(total=total, desc=desc, unit="input", file=sys.stderr, disable=not show,
                dynamic_ncols=True, leave=False)


def as_list(texts: str | Iterable[str]) -> list[str]:
    """A single string or an iterable of strings -> a list, rejecting non-strings."""
    items = [texts] if isinstance(texts, str) else list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InferenceError(f"input {i + 1} is {type(item).__name__}, expected str")
    return items


def check_pairs(texts: list[str], pairs: str | Iterable[str | None] | None
                ) -> list[str | None] | None:
    """``pairs`` as a list aligned with ``texts`` (a single string is one pair; None items
    are single-segment inputs), or an error when the counts differ."""
    if pairs is None:
        return None
    items = [pairs] if isinstance(pairs, str) else list(pairs)
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, str):
            raise InferenceError(f"pair {i + 1} is {type(item).__name__}, expected str")
    if len(items) != len(texts):
        raise InferenceError(f"{len(texts)} texts but {len(items)} pairs: give one pair per "
                             "text (None for a text without one)")
    return items
