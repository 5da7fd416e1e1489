"""Packed MLM-only data: best-fit rows, shards that round-trip their segments, every chunk
of the corpus exactly once, masks off segment ends, the CLI, and a short pre-training run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import UNCASED, WIKITEXT, needs_data

from bertforge.cli.main import main
from bertforge.pretraining import CreateConfig, MaskingCollator, ShardDataset
from bertforge.pretraining import create_pretraining_data as create
from bertforge.pretraining.packing import assign_rows
from bertforge.pretraining.report import export_records, statistics

LENGTH = 64
BASE = dict(max_seq_length=LENGTH, objective="none", input_format="text",
            doc_sep="blank-line", dupe_factor=1, block_tokens=40_000, seed=5)


def test_best_fit_rows_never_overflow_and_keep_order():
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(2000) < 0.6, 128, rng.integers(3, 128, 2000))
    row = assign_rows(lengths, 128)
    fill = np.bincount(row, weights=lengths)
    assert fill.max() <= 128
    assert 1 - lengths.sum() / (128 * len(fill)) < 0.02  # best fit leaves little room
    first_seen = [int(np.flatnonzero(row == r)[0]) for r in range(len(fill))]
    assert first_seen == sorted(first_seen)  # rows numbered in the order they are opened
    with pytest.raises(ValueError, match="longer than a row"):
        assign_rows(np.array([129]), 128)


@pytest.fixture(scope="module")
def shards(uncased, tmp_path_factory) -> dict[str, ShardDataset]:
    """The same chunking of wikitext-2 (valid) unpacked and packed; static masks packed."""
    if not WIKITEXT.is_dir():
        pytest.skip(f"{WIKITEXT} not found")
    root, text = tmp_path_factory.mktemp("packing"), [WIKITEXT / "valid.txt"]
    create(text, uncased, root / "plain", CreateConfig(**BASE, masking="dynamic"))
    create(text, uncased, root / "packed", CreateConfig(**BASE, masking="dynamic", pack=True))
    create(text, uncased, root / "static", CreateConfig(**BASE, masking="static", pack=True))
    return {k: ShardDataset(root / k) for k in ("plain", "packed", "static")}


def segments_of(ds: ShardDataset, i: int) -> list[np.ndarray]:
    x = ds[i]
    cuts = [*x["segment_starts"].tolist(), len(x["input_ids"])]
    return [x["input_ids"][a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def test_rows_hold_whole_segments(shards, uncased):
    ds = shards["packed"]
    assert ds.meta["parameters"]["pack"] is True and ds.meta["counts"]["blocks"] > 2
    cls_id, sep_id = uncased.cls_id, uncased.sep_id
    n_segments = 0
    for i in range(len(ds)):
        x = ds[i]
        assert len(x["input_ids"]) <= LENGTH and x["segment_starts"][0] == 0
        assert (np.diff(x["segment_starts"]) > 2).all()
        assert not x["token_type_ids"].any() and x["next_sentence_label"] == -1
        for seg in segments_of(ds, i):  # no segment crosses a row: each is [CLS] ... [SEP]
            assert seg[0] == cls_id and seg[-1] == sep_id
            assert not np.isin(seg[1:-1], (cls_id, sep_id)).any()
            n_segments += 1
    assert n_segments == ds.meta["counts"]["segments"] == len(shards["plain"])
    assert n_segments > 1.15 * len(ds)  # wikitext's short paragraphs share rows


def test_every_chunk_of_the_corpus_appears_once(shards):
    plain, packed = shards["plain"], shards["packed"]
    want = Counter((int(plain.array("a_doc")[i]), plain[i]["input_ids"].tobytes())
                   for i in range(len(plain)))
    seg_doc, seg_offsets = packed.array("segment_doc"), packed.array("segment_offsets")
    got = Counter()
    for i in range(len(packed)):
        docs = seg_doc[seg_offsets[i]:seg_offsets[i + 1]].tolist()
        for doc, seg in zip(docs, segments_of(packed, i), strict=True):
            got[(doc, seg.tobytes())] += 1
    assert got == want
    assert packed.meta["counts"]["tokens"] == plain.meta["counts"]["tokens"]
    stats_plain, stats_packed = statistics(plain), statistics(packed)
    assert stats_packed["padding_share"] < 0.02 < 0.1 < stats_plain["padding_share"]


def test_export_and_inspect_show_segments(shards, tmp_path, capsys):
    ds = shards["static"]
    records = list(export_records(ds))
    assert len(records) == len(ds)
    first = records[0]
    assert first["segment_starts"] == ds[0]["segment_starts"].tolist()
    assert len(first["segment_docs"]) == len(first["segment_starts"])
    assert first["a_doc"] == first["segment_docs"][0]
    assert main(["data", "inspect", str(ds.path), "--num", "1",
                 "--tokenizer", str(UNCASED)]) == 0
    text = capsys.readouterr().out
    assert "segments_per_row_mean" in text and "segments\n  [0:" in text


def _assert_masks_off_segment_ends(positions: list[int], starts: list[int], length: int):
    ends = set(starts) | {s - 1 for s in starts[1:]} | {length - 1}  # [CLS]s and [SEP]s
    assert positions and not ends & set(positions)


def test_static_and_dynamic_masks_never_hit_cls_or_sep(shards, uncased):
    static = shards["static"]
    for i in range(0, len(static), 7):
        x = static[i]
        _assert_masks_off_segment_ends(x["masked_positions"].tolist(),
                                       x["segment_starts"].tolist(), len(x["input_ids"]))
    stats = statistics(static)
    assert 0.14 < stats["masked_share_of_maskable"] < 0.17
    packed = shards["packed"]
    items = [packed[i] for i in range(64)]
    batch = MaskingCollator(uncased, seed=0)(items)
    assert batch["sequence_ids"].shape == batch["input_ids"].shape
    for r, x in enumerate(items):
        n, starts = len(x["input_ids"]), x["segment_starts"].tolist()
        seq = batch["sequence_ids"][r]
        assert (seq[n:] == -1).all() and seq[0] == 0
        assert seq[:n].diff().nonzero().squeeze(1).add(1).tolist() == starts[1:]
        keep = batch["masked_labels"][r] != -100
        positions = batch["masked_positions"][r][keep].tolist()
        _assert_masks_off_segment_ends(positions, starts, n)
        assert len(positions) == min(20, max(1, round(n * 0.15)))
    for special in (uncased.cls_id, uncased.sep_id):
        assert not (batch["masked_labels"] == special).any()


@needs_data
def test_cli_objective_mlm_with_pack(tmp_path, capsys):
    if not WIKITEXT.is_dir():
        pytest.skip(f"{WIKITEXT} not found")
    out = tmp_path / "ds"
    assert main(["data", "create", "--tokenizer", str(UNCASED), "--quiet", "--input",
                 str(WIKITEXT / "valid.txt"), "--input-format", "text", "--out", str(out),
                 "--objective", "mlm", "--pack", "--masking", "dynamic",
                 "--max-seq-length", "128"]) == 0
    assert "segments packed" in capsys.readouterr().out
    ds = ShardDataset(out)
    assert ds.meta["parameters"]["objective"] == "none" and ds.meta["parameters"]["pack"]
    jsonl = tmp_path / "x.jsonl"
    assert main(["data", "export", str(out), "--out", str(jsonl), "--limit", "3"]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {"segment_starts", "segment_docs"} <= set(rows[0])
    with pytest.raises(ValueError, match="pack needs objective 'none'"):
        CreateConfig(pack=True).resolved()


def test_short_pretrain_run_on_packed_shards(shards, tmp_path):
    from bertforge.training.pretrain import pretrain
    from bertforge.training.pretrain_config import PretrainConfig
    from bertforge.training.pretrain_data import DataMismatch
    from bertforge.training.tracking import read_metrics

    model = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=LENGTH)
    (tmp_path / "model.json").write_text(json.dumps(model))
    run = dict(data=str(shards["packed"].path), model_config=str(tmp_path / "model.json"),
               objective="mlm", max_steps=12, batch_size=8, lr=5e-3, warmup_steps=2,
               log_every=4, eval_every=100, save_every=100, progress=False,
               tensorboard=False, device="cpu", threads=1)
    saved = torch.get_num_threads()
    try:
        pretrain(PretrainConfig(**run, out=str(tmp_path / "run")))
    finally:
        torch.set_num_threads(saved)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [4, 8, 12]
    assert records[-1]["mlm_loss"] < records[0]["mlm_loss"]
    lengths = np.diff(np.asarray(shards["packed"].array("offsets")))
    real = records[-1]["tokens"]  # non-pad tokens only, a little under 12 x 8 full rows
    assert 12 * 8 * lengths.min() <= real <= 12 * 8 * LENGTH and real > 0.95 * 12 * 8 * LENGTH
    with pytest.raises(DataMismatch, match="mlm only"):
        pretrain(PretrainConfig(**{**run, "objective": "ltr"}, out=str(tmp_path / "ltr")))


def test_model_sees_the_segments_apart(shards, uncased):
    """The collated packed batch through the model equals each segment alone."""
    from _helpers import tiny_config

    from bertforge.model import BertModel

    torch.manual_seed(0)
    model = BertModel(tiny_config(vocab_size=30522)).eval()
    items = [shards["packed"][i] for i in range(4)]
    batch = MaskingCollator(uncased, seed=1)(items)
    with torch.no_grad():
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                    sequence_ids=batch["sequence_ids"]).last_hidden_state
        for r, x in enumerate(items):
            cuts = [*x["segment_starts"].tolist(), len(x["input_ids"])]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                ids = batch["input_ids"][r:r + 1, a:b]
                alone = model(ids, torch.zeros_like(ids)).last_hidden_state[0]
                torch.testing.assert_close(out[r, a:b], alone, atol=1e-5, rtol=1e-5)


def test_unpacked_shards_have_no_segments(shards):
    x = shards["plain"][0]
    assert "segment_starts" not in x
    assert "segments" not in Path(shards["plain"].path / "meta.json").read_text()
