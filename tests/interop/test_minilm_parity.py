"""A real pre-trained checkpoint: all-MiniLM-L6-v2 (L6, H384, uncased), from its package."""

from __future__ import annotations

import pytest
import torch

from bertforge.model import BertModel
from bertforge.tokenization import load_tokenizer

transformers = pytest.importorskip("transformers")

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The new movie is awesome and the acting is superb, really.",
             "A cheetah chases prey across a field."]


def encode(minilm_dir):
    tok = load_tokenizer(minilm_dir)
    b = tok.encode_batch(SENTENCES)
    return {k: torch.from_numpy(getattr(b, k)) for k in
            ("input_ids", "token_type_ids", "attention_mask")}


def test_hidden_states_equal_transformers(minilm_dir):
    args = encode(minilm_dir)
    ours = BertModel.from_pretrained(str(minilm_dir))
    theirs = transformers.BertModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        a = ours(**args).last_hidden_state
        b = theirs(**args).last_hidden_state
    real = args["attention_mask"].bool()
    assert real.sum() < real.numel()  # the batch really is padded
    torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=0)


def test_published_similarity(minilm_dir):
    args = encode(minilm_dir)
    model = BertModel.from_pretrained(str(minilm_dir))
    with torch.no_grad():
        hidden = model(**args).last_hidden_state
    mask = args["attention_mask"][..., None].float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert float(emb[0] @ emb[1]) == pytest.approx(0.755, abs=0.002)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[3])  # food vs. cheetah
