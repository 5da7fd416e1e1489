"""Masking statistics on real books (fixed seeds, over 100k masked tokens)."""

from __future__ import annotations

import numpy as np
from conftest import needs_data

from bertforge.pretraining import MaskingRule, draw_masks, num_to_mask

pytestmark = needs_data


def _arrays(ds):
    offsets = np.asarray(ds.array("offsets"))
    m_off = np.asarray(ds.array("masked_offsets"))
    return (offsets, np.asarray(ds.array("input_ids")).astype(np.int64), m_off,
            np.asarray(ds.array("masked_positions")).astype(np.int64),
            np.asarray(ds.array("masked_labels")).astype(np.int64))


def test_count_formula_and_share(static_ds, uncased):
    offsets, ids, m_off, pos, labels = _arrays(static_ds)
    lengths, counts = np.diff(offsets), np.diff(m_off)
    rule = MaskingRule.from_tokenizer(uncased)
    assert len(labels) >= 100_000
    np.testing.assert_array_equal(counts, num_to_mask(lengths, rule))
    share = len(labels) / (lengths.sum() - 3 * len(lengths))  # [CLS] and two [SEP]
    assert 0.15 <= share <= 0.16


def test_80_10_10_and_never_special(static_ds, uncased):
    offsets, ids, m_off, pos, labels = _arrays(static_ds)
    owner = np.repeat(np.arange(len(offsets) - 1), np.diff(m_off))
    stored = ids[offsets[owner] + pos]
    mask = stored == uncased.mask_id
    kept = ~mask & (stored == labels)
    rand = ~mask & ~kept
    n = len(labels)
    assert abs(mask.sum() / n - 0.8) < 0.015
    assert abs(kept.sum() / n - 0.1) < 0.015
    assert abs(rand.sum() / n - 0.1) < 0.015
    assert not np.isin(labels, [uncased.cls_id, uncased.sep_id, uncased.pad_id]).any()
    assert (pos > 0).all()
    # ascending positions within each instance
    same = owner[1:] == owner[:-1]
    assert (pos[1:][same] > pos[:-1][same]).all()


def test_whole_word_masking_never_splits_a_word(dynamic_ds, uncased):
    offsets = np.asarray(dynamic_ds.array("offsets"))
    ids = np.asarray(dynamic_ds.array("input_ids")).astype(np.int64)
    rule = MaskingRule.from_tokenizer(uncased, whole_word_mask=True)
    draw = draw_masks(ids, offsets, rule, np.random.default_rng(0))
    owner = np.repeat(np.arange(len(offsets) - 1), draw.counts)
    masked = np.zeros(len(ids), dtype=bool)
    masked[offsets[owner] + draw.positions] = True
    piece = rule.continuation[ids]
    joined = piece[1:] & ~np.isin(ids[:-1], rule.never_mask)
    # a '##' piece is masked exactly when the token before it is
    assert (masked[1:][joined] == masked[:-1][joined]).all()
    assert joined.sum() > 1000 and masked.sum() > 20_000
    assert (draw.counts <= num_to_mask(np.diff(offsets), rule)).all()
    assert (draw.counts == num_to_mask(np.diff(offsets), rule)).mean() > 0.99
    np.testing.assert_array_equal(draw.labels, ids[offsets[owner] + draw.positions])


def test_draw_is_deterministic_per_generator(uncased):
    rule = MaskingRule.from_tokenizer(uncased)
    ids = np.arange(2000, 2600) % 3000 + 1000
    offsets = np.array([0, 100, 250, 600])
    a = draw_masks(ids, offsets, rule, np.random.default_rng(5))
    b = draw_masks(ids, offsets, rule, np.random.default_rng(5))
    c = draw_masks(ids, offsets, rule, np.random.default_rng(6))
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    assert not np.array_equal(a.positions, c.positions)
    assert a.counts.tolist() == [15, 20, 20]
