"""Audit 5: pairs given to the embedder and the feature extractor from Python; fill-mask
sequences with several masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import tiny_config
from conftest import save_tiny

from bertforge.inference import FeatureExtractor, InferenceError, pipeline


def _hf_hidden(minilm_dir, a, b):
    transformers = pytest.importorskip("transformers")
    tok = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
    model = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
    with torch.no_grad():
        return model(**tok(a, b, return_tensors="pt"), output_hidden_states=True)


def test_embed_a_pair_given_as_one_string(minilm_dir):
    """``encode("A", pairs="B")`` embedded the pair "b" (the first character of "B")."""
    emb = pipeline("embed", model=minilm_dir, normalize=False)
    got = emb.encode("A man is eating.", pairs="He likes bread.")
    ref = _hf_hidden(minilm_dir, "A man is eating.", "He likes bread.").last_hidden_state
    np.testing.assert_allclose(got[0], ref[0].mean(0).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pairs", [["b", "extra"], []])
def test_pair_count_must_match(minilm_dir, pairs):
    """Extra pairs were silently dropped."""
    emb = pipeline("embed", model=minilm_dir)
    with pytest.raises(InferenceError, match="pairs"):
        emb.encode(["a"], pairs=pairs)
    fx = FeatureExtractor.from_pretrained(minilm_dir)
    with pytest.raises(InferenceError, match="pairs"):
        list(fx.extract(["a"], pairs=pairs, layers=[-1]))


def test_feature_extractor_is_callable_and_takes_a_string_pair(minilm_dir):
    fx = pipeline("feature-extraction", model=minilm_dir)
    (features,) = fx("Who?", pairs="The answer.", layers=[-1, 0])
    ref = _hf_hidden(minilm_dir, "Who?", "The answer.").hidden_states
    expected = torch.stack([ref[-1][0], ref[1][0]], dim=1).numpy()  # [T, 2, H]
    np.testing.assert_allclose(features.values, expected, atol=1e-5, rtol=1e-5)


def test_fill_mask_sequence_keeps_the_other_masks(tmp_path):
    """With two masks, each candidate's ``sequence`` dropped the other [MASK] (as
    transformers' fill-mask shows it: "[CLS] i love you [MASK] much [SEP]")."""
    transformers = pytest.importorskip("transformers")
    from bertforge.model import BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(initializer_range=0.5)).eval()
    path = save_tiny(model, tmp_path / "mlm")
    theirs = transformers.pipeline(
        "fill-mask", model=transformers.BertForMaskedLM.from_pretrained(str(path)),
        tokenizer=transformers.BertTokenizerFast.from_pretrained(str(path)), top_k=2)
    text = "the man [MASK] food and [MASK] bread ."
    ours = pipeline("fill-mask", model=path)(text, top_k=2)[0]
    for mine, ref in zip(ours, theirs(text), strict=True):
        assert [p.token_id for p in mine] == [r["token"] for r in ref]
        assert [p.sequence for p in mine] == [
            r["sequence"].removeprefix("[CLS] ").removesuffix(" [SEP]") for r in ref]
