"""Shard directories: byte-identical across worker counts, parts, O(1) reads, collation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_data

from bertforge.pretraining import (
    CreateConfig,
    MaskingCollator,
    ShardDataset,
    create_pretraining_data,
)

pytestmark = needs_data

SMALL = dict(block_tokens=20_000, piece_bytes=100_000, dupe_factor=2, seed=11)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_same_seed_same_bytes_with_1_and_4_workers(books_small, uncased, tmp_path):
    for workers in (1, 4):
        create_pretraining_data([books_small], uncased, tmp_path / f"w{workers}",
                                CreateConfig(**SMALL), workers=workers)
    one, four = _files(tmp_path / "w1"), _files(tmp_path / "w4")
    assert ShardDataset(tmp_path / "w1").meta["counts"]["blocks"] > 4
    assert one.keys() == four.keys() and "input_ids.npy" in one
    for name in one:
        assert one[name] == four[name], f"{name} differs between 1 and 4 workers"
    create_pretraining_data([books_small], uncased, tmp_path / "other",
                            CreateConfig(**(SMALL | {"seed": 12})))
    assert _files(tmp_path / "other")["input_ids.npy"] != one["input_ids.npy"]


def test_shard_index_parts_split_the_documents(books_small, uncased, tmp_path):
    parts = tmp_path / "parts"
    for i in range(2):
        create_pretraining_data([books_small], uncased, parts / f"part-{i}",
                                CreateConfig(**SMALL, num_shards=2, shard_index=i))
    p0, p1 = ShardDataset(parts / "part-0"), ShardDataset(parts / "part-1")
    docs0 = set(np.asarray(p0.array("a_doc")).tolist())
    docs1 = set(np.asarray(p1.array("a_doc")).tolist())
    assert docs0 and docs1 and not docs0 & docs1
    assert all(d % 2 == 0 for d in docs0) and all(d % 2 == 1 for d in docs1)
    both = ShardDataset(parts)
    assert len(both) == len(p0) + len(p1)
    np.testing.assert_array_equal(both[len(p0)]["input_ids"], p1[0]["input_ids"])


def test_dataset_access_and_pickle(static_ds):
    x = static_ds[len(static_ds) - 1]
    assert set(x) == {"input_ids", "token_type_ids", "next_sentence_label",
                      "masked_positions", "masked_labels"}
    assert all(v.dtype == np.int64 for v in x.values())
    assert len(x["masked_positions"]) == len(x["masked_labels"])
    clone = pickle.loads(pickle.dumps(static_ds))
    np.testing.assert_array_equal(clone[5]["input_ids"], static_ds[5]["input_ids"])
    assert len(pickle.dumps(static_ds)) < 1000  # the arrays are reopened, never copied
    with pytest.raises(IndexError):
        static_ds[len(static_ds)]


def test_collator_dynamic_and_resume(dynamic_ds, uncased):
    batch_items = [dynamic_ds[i] for i in range(8)]
    collate = MaskingCollator(uncased, pad_to_multiple_of=8, seed=0)
    state = collate.state_dict()
    b1 = collate(batch_items)
    assert all(t.dtype == torch.int64 for t in b1.values())
    bsz, width = b1["input_ids"].shape
    assert bsz == 8 and width % 8 == 0
    lengths = [len(x["input_ids"]) for x in batch_items]
    assert b1["attention_mask"].sum(1).tolist() == lengths
    assert b1["input_ids"][0, lengths[0]:].eq(uncased.pad_id).all() or lengths[0] == width
    pos, lab = b1["masked_positions"], b1["masked_labels"]
    for r, x in enumerate(batch_items):
        real = lab[r] != -100
        assert (pos[r][~real] == 0).all()
        np.testing.assert_array_equal(lab[r][real].numpy(), x["input_ids"][pos[r][real].numpy()])
    b2 = collate(batch_items)
    assert not torch.equal(b1["masked_positions"], b2["masked_positions"])
    collate.load_state_dict(state)
    b3 = collate(batch_items)
    for k in b1:
        assert torch.equal(b1[k], b3[k]), k
    assert b1["next_sentence_label"].tolist() == [int(x["next_sentence_label"])
                                                  for x in batch_items]


def test_collator_static_uses_stored_masks(static_ds, uncased):
    items = [static_ds[i] for i in range(4)]
    batch = MaskingCollator(uncased, seed=1)(items)
    for r, x in enumerate(items):
        n = len(x["masked_positions"])
        assert batch["masked_positions"][r, :n].tolist() == x["masked_positions"].tolist()
        assert batch["masked_labels"][r, :n].tolist() == x["masked_labels"].tolist()
        assert batch["input_ids"][r, :len(x["input_ids"])].tolist() == x["input_ids"].tolist()


def test_collator_works_in_a_dataloader(dynamic_ds, uncased):
    loader = torch.utils.data.DataLoader(dynamic_ds, batch_size=16, shuffle=True,
                                         collate_fn=MaskingCollator(uncased, seed=2))
    batch = next(iter(loader))
    assert batch["input_ids"].shape[0] == 16
    assert (batch["masked_labels"] != -100).sum() > 16 * 10
