"""Pairs: NSP balance, true continuations, other-document negatives, limits, layouts."""

from __future__ import annotations

import numpy as np
from conftest import needs_data

from bertforge.pretraining import CreateConfig, ShardDataset, create_pretraining_data
from bertforge.pretraining.docstore import DocStore

pytestmark = needs_data


def test_not_next_share_and_limits(static_ds, uncased):
    labels = np.asarray(static_ds.array("next_sentence_label"))
    share = (labels == 1).mean()
    assert 0.48 <= share <= 0.56
    lengths = np.diff(np.asarray(static_ds.array("offsets")))
    assert lengths.max() <= 128 and lengths.min() >= 5
    for i in range(0, len(static_ds), 997):
        x = static_ds[i]
        ids, types = x["input_ids"], x["token_type_ids"]
        seps = np.flatnonzero(ids == uncased.sep_id)
        assert ids[0] == uncased.cls_id and ids[-1] == uncased.sep_id
        assert types[:seps[0] + 1].sum() == 0 and (types[seps[0] + 1:] == 1).all()


def _find(haystack: np.ndarray, needle: np.ndarray) -> list[int]:
    """Start positions of ``needle`` in ``haystack``."""
    starts = np.flatnonzero(haystack[:len(haystack) - len(needle) + 1] == needle[0])
    for j in range(1, min(len(needle), 6)):
        starts = starts[haystack[starts + j] == needle[j]]
    return [int(s) for s in starts if np.array_equal(haystack[s:s + len(needle)], needle)]


def test_pairs_come_from_the_right_documents(dynamic_ds, uncased):
    store = DocStore(dynamic_ds.path / "docstore")
    doc_ids = np.asarray(store.doc_ids)
    a_doc, b_doc = np.asarray(dynamic_ds.array("a_doc")), np.asarray(dynamic_ds.array("b_doc"))
    labels = np.asarray(dynamic_ds.array("next_sentence_label"))
    assert (a_doc[labels == 1] != b_doc[labels == 1]).all()
    assert (a_doc[labels == 0] == b_doc[labels == 0]).all()
    limit = 128 - 3
    checked_exact = 0
    for i in range(0, len(dynamic_ds), 5):
        x = dynamic_ds[i]
        ids = x["input_ids"]
        sep = int(np.flatnonzero(ids == uncased.sep_id)[0])
        a, b = ids[1:sep], ids[sep + 1:-1]
        doc_a = store.document_tokens(int(np.searchsorted(doc_ids, a_doc[i])))
        doc_b = store.document_tokens(int(np.searchsorted(doc_ids, b_doc[i])))
        where_a, where_b = _find(doc_a, a), _find(doc_b, b)
        assert where_a and where_b, f"instance {i}: segment not found in its document"
        if labels[i] == 0:
            gaps = [wb - (wa + len(a)) for wa in where_a for wb in where_b]
            if len(a) + len(b) < limit:  # not truncated: B starts where A ends
                assert 0 in gaps, f"instance {i}: IsNext B is not the continuation of A"
                checked_exact += 1
            else:
                assert any(0 <= g <= limit for g in gaps)
    assert checked_exact > 20


def test_sop_and_none_objectives(books_small, uncased, tmp_path):
    create_pretraining_data([books_small], uncased, tmp_path / "sop",
                            CreateConfig(objective="sop", masking="dynamic", seed=1),
                            keep_docstore=True)
    sop = ShardDataset(tmp_path / "sop")
    labels = np.asarray(sop.array("next_sentence_label"))
    assert abs(labels.mean() - 0.5) < 0.04
    assert (np.asarray(sop.array("a_doc")) == np.asarray(sop.array("b_doc"))).all()
    store = DocStore(tmp_path / "sop" / "docstore")
    for i in range(0, len(sop), 50):
        x = sop[i]
        sep = int(np.flatnonzero(x["input_ids"] == uncased.sep_id)[0])
        a, b = x["input_ids"][1:sep], x["input_ids"][sep + 1:-1]
        doc = store.document_tokens(int(np.searchsorted(store.doc_ids, sop.array("a_doc")[i])))
        if len(a) + len(b) < 125:
            first, second = (b, a) if labels[i] == 1 else (a, b)
            joined = np.concatenate([first, second])
            assert _find(doc, joined), f"instance {i}: not an in-order or swapped pair"
    create_pretraining_data([books_small], uncased, tmp_path / "none",
                            CreateConfig(objective="none", dupe_factor=1, seed=1))
    none = ShardDataset(tmp_path / "none")
    x = none[3]
    assert x["next_sentence_label"] == -1 and (x["token_type_ids"] == 0).all()
    assert (x["input_ids"] == uncased.sep_id).sum() == 1 and len(x["input_ids"]) <= 128
    assert np.diff(np.asarray(none.array("offsets"))).max() == 128
