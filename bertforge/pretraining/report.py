"""Statistics, readable instances and JSONL export of a shard directory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bertforge.pretraining.shards import ShardDataset
from bertforge.tokenization import BertTokenizer


def statistics(ds: ShardDataset) -> dict:
    """Counts and shares over the whole data set, computed from the arrays (vectorised)."""
    offsets = np.asarray(ds.array("offsets"))
    lengths = np.diff(offsets)
    labels = np.asarray(ds.array("next_sentence_label"))
    out = {"instances": len(lengths), "tokens": int(lengths.sum()),
           "length_mean": round(float(lengths.mean()), 2),
           "length_percentiles": {str(q): int(np.percentile(lengths, q))
                                  for q in (5, 50, 95, 100)},
           "is_next": int((labels == 0).sum()), "not_next": int((labels == 1).sum())}
    if out["is_next"] + out["not_next"]:
        out["not_next_share"] = round(out["not_next"] / (out["is_next"] + out["not_next"]), 4)
    width = int(ds.meta["parameters"]["max_seq_length"])
    out["padding_share"] = round(1 - out["tokens"] / max(len(lengths) * width, 1), 4)
    if _packed(ds):
        segments = len(ds.array("segment_starts"))
        out |= {"segments": segments,
                "segments_per_row_mean": round(segments / max(len(lengths), 1), 2)}
    if ds.meta["parameters"]["masking"] == "static":
        out |= _mask_statistics(ds, offsets, lengths)
    return out


def _packed(ds: ShardDataset) -> bool:
    return bool(ds.meta["parameters"].get("pack", False))


def _mask_statistics(ds: ShardDataset, offsets: np.ndarray, lengths: np.ndarray) -> dict:
    tok = ds.meta["tokenizer"]
    counts = np.diff(np.asarray(ds.array("masked_offsets")))
    owner = np.repeat(np.arange(len(counts)), counts)
    stored = np.asarray(ds.array("input_ids"))[offsets[owner]
                                               + np.asarray(ds.array("masked_positions"))]
    original = np.asarray(ds.array("masked_labels"))
    n = max(len(original), 1)
    as_mask = int((stored == tok["mask_id"]).sum())
    kept = int(((stored == original) & (stored != tok["mask_id"])).sum())
    specials = (3 if ds.meta["parameters"]["objective"] != "none" else 2) * len(lengths)
    if _packed(ds):
        specials = 2 * len(ds.array("segment_starts"))  # [CLS] and [SEP] of every segment
    return {"masked_tokens": len(original),
            "masked_share_of_maskable": round(len(original) / max(
                int(lengths.sum()) - specials, 1), 4),
            "share_mask": round(as_mask / n, 4), "share_kept": round(kept / n, 4),
            "share_random": round((len(original) - as_mask - kept) / n, 4)}


def describe_instance(ds: ShardDataset, i: int, tokenizer: BertTokenizer | None) -> str:
    """Instance ``i`` as text: masked tokens shown as ``[MASK→original]`` (or
    ``shown→original`` for random and kept ones); ids when no tokenizer is given."""
    x = ds[i]
    ids = x["input_ids"].tolist()
    words = tokenizer.convert_ids_to_tokens(ids) if tokenizer else [str(t) for t in ids]
    for pos, label in zip(x.get("masked_positions", []), x.get("masked_labels", []),
                          strict=True):
        orig = tokenizer.convert_ids_to_tokens([int(label)])[0] if tokenizer else str(label)
        words[int(pos)] = f"{words[int(pos)]}\u2192{orig}"
    label = {0: "IsNext", 1: "NotNext", -1: "-"}[int(x["next_sentence_label"])]
    if ds.meta["parameters"]["objective"] == "sop":
        label = {0: "in order", 1: "swapped", -1: "-"}[int(x["next_sentence_label"])]
    head = f"#{i}  length {len(ids)}  {label}"
    if "segment_starts" in x:  # packed: one line per segment
        cuts = [*x["segment_starts"].tolist(), len(ids)]
        lines = [f"  [{a}:{b}] " + " ".join(words[a:b])
                 for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        return f"{head}  {len(cuts) - 1} segments\n" + "\n".join(lines)
    return head + "\n  " + " ".join(words)


def export_records(ds: ShardDataset) -> Iterator[dict]:
    """One JSON-ready dict per instance (see ``export_jsonl``)."""
    a_doc, b_doc = ds.array("a_doc"), ds.array("b_doc")
    single = ds.meta["parameters"]["objective"] == "none"
    packed = _packed(ds)
    if packed:
        seg_offsets, seg_doc = ds.array("segment_offsets"), ds.array("segment_doc")
    for i in range(len(ds)):
        x = ds[i]
        record = {"input_ids": x["input_ids"].tolist(),
                  "token_type_ids": x["token_type_ids"].tolist(),
                  "masked_positions": x.get("masked_positions", np.zeros(0, int)).tolist(),
                  "masked_labels": x.get("masked_labels", np.zeros(0, int)).tolist(),
                  "next_sentence_label": int(x["next_sentence_label"]),
                  "a_doc": int(a_doc[i]), "b_doc": None if single else int(b_doc[i])}
        if packed:
            record["segment_starts"] = x["segment_starts"].tolist()
            record["segment_docs"] = seg_doc[seg_offsets[i]:seg_offsets[i + 1]].tolist()
        yield record


def export_jsonl(ds: ShardDataset, path: str | os.PathLike, limit: int | None = None) -> int:
    """Write one JSON object per instance: ``input_ids``, ``token_type_ids``,
    ``masked_positions``, ``masked_labels`` (original ids), ``next_sentence_label``
    (0 IsNext, 1 NotNext), ``a_doc``, ``b_doc`` (reading-order document indices; b_doc is
    null without an objective); for packed data also ``segment_starts`` (where each
    ``[CLS] segment [SEP]`` of the row starts) and ``segment_docs`` (their documents).
    Returns the number written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for record in export_records(ds):
            if limit is not None and n >= limit:
                break
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            n += 1
    return n
