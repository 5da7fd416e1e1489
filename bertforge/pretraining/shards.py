"""The shard directory: pre-training instances in memory-mapped arrays.

``input_ids.npy``          every instance back to back, [CLS] A [SEP] B [SEP]   [T]
``offsets.npy``            where instance i starts in ``input_ids``             [N + 1] int64
``b_start.npy``            position of B's first token (= length when no B)     [N]
``next_sentence_label.npy`` 0 IsNext, 1 NotNext (or swapped, SOP), -1 none      [N] int8
``a_doc.npy``, ``b_doc.npy`` reading-order document index of A and of B         [N] int64
with ``pack`` (several ``[CLS] segment [SEP]`` per row, MLM only; a_doc/b_doc are then the
first and last segment's documents):
``segment_offsets.npy``    where row i's segments start in the two arrays below [N + 1] int64
``segment_starts.npy``     position of each segment's [CLS] in its row          [G]
``segment_doc.npy``        reading-order document index of each segment         [G] int64
and with static masks (the stored ``input_ids`` then hold the masked tokens):
``masked_offsets.npy``     where instance i's masks start                      [N + 1] int64
``masked_positions.npy``   masked positions, ascending within an instance       [M]
``masked_labels.npy``      the original ids at those positions                  [M]
``meta.json``              the tokenizer's fingerprint, every parameter, the counts.

Token ids are uint16 when the vocabulary fits (else int32), positions uint16 when the
sequence length fits. ``ShardDataset`` reads one instance in O(1) without loading arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from bertforge.pretraining.instances import Materialized
from bertforge.pretraining.masking import MaskDraw
from bertforge.pretraining.npyio import NpyAppender, open_array
from bertforge.pretraining.packing import PackedRows

META = "meta.json"


class ShardWriter:
    """Appends blocks of instances to a shard directory."""

    def __init__(self, folder: str | os.PathLike, token_dtype: np.dtype,
                 position_dtype: np.dtype, static: bool, packed: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        specs = {"input_ids": token_dtype, "offsets": np.int64, "b_start": position_dtype,
                 "next_sentence_label": np.int8, "a_doc": np.int64, "b_doc": np.int64}
        if static:
            specs |= {"masked_offsets": np.int64, "masked_positions": position_dtype,
                      "masked_labels": token_dtype}
        if packed:
            specs |= {"segment_offsets": np.int64, "segment_starts": position_dtype,
                      "segment_doc": np.int64}
        self._files = {name: NpyAppender(self.folder / f"{name}.npy", dt)
                       for name, dt in specs.items()}
        self._files["offsets"].append(np.zeros(1, np.int64))
        for name in ("masked_offsets", "segment_offsets"):
            if name in self._files:
                self._files[name].append(np.zeros(1, np.int64))
        self.n_instances = self.n_tokens = self.n_masked = self.n_segments = 0

    def add(self, mat: Materialized, labels: np.ndarray, a_doc: np.ndarray, b_doc: np.ndarray,
            masks: MaskDraw | None, packed: PackedRows | None = None) -> None:
        """Append instances (``masks`` for static masking, ``packed`` for packed rows)."""
        f = self._files
        f["input_ids"].append(mat.input_ids if masks is None else masks.input_ids)
        f["offsets"].append(self.n_tokens + mat.offsets[1:])
        f["b_start"].append(mat.b_start)
        f["next_sentence_label"].append(labels)
        f["a_doc"].append(a_doc)
        f["b_doc"].append(b_doc)
        if masks is not None:
            f["masked_offsets"].append(self.n_masked + np.cumsum(masks.counts))
            f["masked_positions"].append(masks.positions)
            f["masked_labels"].append(masks.labels)
            self.n_masked += len(masks.positions)
        if packed is not None:
            f["segment_offsets"].append(self.n_segments + packed.segment_offsets[1:])
            f["segment_starts"].append(packed.segment_starts)
            f["segment_doc"].append(packed.segment_doc)
            self.n_segments += len(packed.segment_starts)
        self.n_tokens += int(mat.offsets[-1])
        self.n_instances += len(labels)

    def close(self, meta: dict) -> None:
        """Finish the arrays and write ``meta.json``."""
        for appender in self._files.values():
            appender.close()
        text = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False)
        (self.folder / META).write_text(text + "\n", encoding="utf-8")


class _Part:
    """One shard directory's arrays, opened lazily (memory maps; nothing is read)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self.meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder / META}: cannot read ({err}); is this a shard "
                             "directory written by 'bertforge data create'?") from None
        self.static = self.meta["parameters"]["masking"] == "static"
        self.packed = bool(self.meta["parameters"].get("pack", False))
        self._arrays: dict[str, np.ndarray] = {}
        self.length = int(self.meta["counts"]["instances"])

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            path = self.folder / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing from the shard directory; "
                                        "recreate it with 'bertforge data create'")
            self._arrays[name] = open_array(path)
        return self._arrays[name]

    def instance(self, i: int) -> dict[str, np.ndarray]:
        lo, hi = self.array("offsets")[i:i + 2]
        ids = self.array("input_ids")[lo:hi].astype(np.int64)
        b_start = int(self.array("b_start")[i])
        out = {"input_ids": ids,
               "token_type_ids": (np.arange(len(ids)) >= b_start).astype(np.int64),
               "next_sentence_label": np.int64(self.array("next_sentence_label")[i])}
        if self.static:
            m_lo, m_hi = self.array("masked_offsets")[i:i + 2]
            out["masked_positions"] = self.array("masked_positions")[m_lo:m_hi].astype(np.int64)
            out["masked_labels"] = self.array("masked_labels")[m_lo:m_hi].astype(np.int64)
        if self.packed:
            s_lo, s_hi = self.array("segment_offsets")[i:i + 2]
            out["segment_starts"] = self.array("segment_starts")[s_lo:s_hi].astype(np.int64)
        return out


class ShardDataset:
    """Pre-training instances of a shard directory (or of a folder of shard directories,
    e.g. one per ``--shard-index``, read in name order as one data set).

    ``ds[i]`` is a dict of numpy int64 arrays: ``input_ids`` [L] with [CLS]/[SEP],
    unpadded; ``token_type_ids`` [L] (0 for [CLS] A [SEP], 1 for B [SEP]);
    ``next_sentence_label`` (scalar: 0 IsNext, 1 NotNext, -1 without an objective); and
    with static masking ``masked_positions`` [P] and ``masked_labels`` [P] (original ids;
    ``input_ids`` then already holds [MASK]/random/kept tokens); for packed data
    (``meta["parameters"]["pack"]``) ``segment_starts`` [G] (where each of the row's
    ``[CLS] segment [SEP]`` starts; the first is 0). O(1) per instance, via
    memory maps; ``meta`` is the (first part's) ``meta.json``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._parts = [_Part(p) for p in _part_dirs(self.path)]
        self.meta = self._parts[0].meta
        fingerprints = {p.meta["tokenizer"]["fingerprint"] for p in self._parts}
        if len(fingerprints) > 1:
            raise ValueError(f"{self.path}: the parts were built with different tokenizers")
        self._ends = np.cumsum([p.length for p in self._parts])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"instance {i} out of range for {n} instances")
        i %= n
        k = int(np.searchsorted(self._ends, i, side="right"))
        start = int(self._ends[k - 1]) if k else 0
        return self._parts[k].instance(i - start)

    def array(self, name: str) -> np.ndarray:
        """A raw array of a single-part data set (e.g. ``a_doc``), memory-mapped."""
        if len(self._parts) != 1:
            raise ValueError(f"{self.path}: array() reads one shard directory, not a folder of "
                             "them")
        return self._parts[0].array(name)

    def __getstate__(self) -> dict:  # for DataLoader workers: reopen, never copy the arrays
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def _part_dirs(path: Path) -> list[Path]:
    if (path / META).is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such shard directory")
    parts = sorted(p for p in path.iterdir() if (p / META).is_file())
    if not parts:
        raise FileNotFoundError(f"{path}: no {META} here or in its subdirectories; is this the "
                                "--out directory of 'bertforge data create'?")
    return parts
