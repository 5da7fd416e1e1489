"""Dropping padding: where the real tokens of a padded (or packed) batch sit, and how
attention sees them when only those run through the encoder (``bert.py``).

Legend: B = batch, S = sequence length, H = hidden, T = real tokens,
R = sequences (rows, or every sequence of packed rows), W = the longest sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Unpadded:
    """Where the T real tokens of a [B, S] batch sit, and how attention sees them.

    Linear layers, LayerNorm and the activation run on [T, H] (padding costs nothing
    there). Attention runs on [R, W]: one row per sequence (R = rows of the batch, or
    every sequence of packed rows), W = the longest sequence; ``slot`` [T] says where each
    token goes in the flattened R * W, ``key_mask`` [R, 1, 1, W] which slots are real.
    """

    index: torch.Tensor  # [T], int64 positions of real tokens in the flattened batch
    batch: int
    seq_len: int
    slot: torch.Tensor  # [T], int64 positions of real tokens in the flattened [R, W]
    rows: int
    width: int
    key_mask: torch.Tensor | None  # [R, 1, 1, W] bool, None when every sequence fills W

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor,
                  sequence_ids: torch.Tensor | None = None) -> Unpadded:
        """A sequence is a row's real tokens, or with ``sequence_ids`` [B, S] a run of
        equal ids among them (packed rows)."""
        b, s = attention_mask.shape
        index = attention_mask.flatten().nonzero().squeeze(1)  # [T]
        row = index // s  # row of each real token
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = row[1:] != row[:-1]  # a new sequence starts here
        if sequence_ids is not None:
            ids = sequence_ids.flatten().index_select(0, index)
            first[1:] |= ids[1:] != ids[:-1]
        starts = first.nonzero().squeeze(1)  # [R]
        seq = first.cumsum(0) - 1  # [T], which sequence each token is in
        lengths = torch.diff(starts, append=starts.new_tensor([len(index)]))  # [R]
        rows, width = len(starts), int(lengths.max()) if len(starts) else 0
        slot = seq * width + torch.arange(len(index), device=index.device) - starts[seq]
        key_mask = None
        if bool((lengths < width).any()):
            key_mask = (torch.arange(width, device=index.device) < lengths[:, None])[
                :, None, None, :]  # [R, W] -> [R, 1, 1, W]
        return cls(index, b, s, slot, rows, width, key_mask)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 1).index_select(0, self.index)  # [B, S, ...] -> [T, ...]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.batch * self.seq_len, *x.shape[1:])
        out.index_copy_(0, self.index, x)
        return out.view(self.batch, self.seq_len, *x.shape[1:])  # [T, ...] -> [B, S, ...]

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.rows * self.width, *x.shape[1:])
        out.index_copy_(0, self.slot, x)
        return out.view(self.rows, self.width, *x.shape[1:])  # [T, ...] -> [R, W, ...]

    def from_rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 1).index_select(0, self.slot)  # [R, W, ...] -> [T, ...]

    def attention_mask(self, is_causal: bool) -> torch.Tensor | None:
        """The mask for attention over [R, W]: real keys (and earlier ones if causal)."""
        if not is_causal:
            return self.key_mask
        causal = torch.ones(self.width, self.width, dtype=torch.bool,
                            device=self.slot.device).tril()[None, None]  # [1, 1, W, W]
        return causal if self.key_mask is None else self.key_mask & causal


def run_starts(sequence_ids: torch.Tensor) -> torch.Tensor:
    """bool [B, S]: True where a run of equal ``sequence_ids`` [B, S] begins."""
    return torch.cat([torch.ones_like(sequence_ids[:, :1], dtype=torch.bool),
                      sequence_ids[:, 1:] != sequence_ids[:, :-1]], dim=1)


def packed_positions(sequence_ids: torch.Tensor) -> torch.Tensor:
    """Position ids [B, S] that restart at 0 where ``sequence_ids`` [B, S] changes."""
    t = torch.arange(sequence_ids.shape[1], device=sequence_ids.device)
    first = run_starts(sequence_ids)
    return t - torch.where(first, t, 0).cummax(dim=1).values  # minus its sequence's start
