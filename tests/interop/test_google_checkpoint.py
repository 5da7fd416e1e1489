"""Google's original TF checkpoint format, read without TensorFlow, mapped into our model.

The fixture in tests/fixtures/google_tiny was written once by TensorFlow itself
(scripts/make_tf_fixture.py), with Google's variable names, Adam slots and global_step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from bertforge.cli.main import main
from bertforge.model import BertForPreTraining, BertModel
from bertforge.tokenization import load_tokenizer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "google_tiny"
transformers = pytest.importorskip("transformers")


def test_every_google_variable_lands_in_the_right_parameter():
    expected = load_file(str(FIXTURE / "expected.safetensors"))
    model = BertForPreTraining.from_pretrained(str(FIXTURE), strict=True)
    params = model.state_dict()
    layer0 = "bert/encoder/layer_0/"
    checks = {
        "bert.embeddings.word_embeddings.weight": expected["bert/embeddings/word_embeddings"],
        "bert.layers.0.attn.q.weight": expected[layer0 + "attention/self/query/kernel"].T,
        "bert.layers.0.attn.o.bias": expected[layer0 + "attention/output/dense/bias"],
        "bert.layers.1.ffn.up.weight":
            expected["bert/encoder/layer_1/intermediate/dense/kernel"].T,
        "bert.layers.1.ffn_norm.weight":
            expected["bert/encoder/layer_1/output/LayerNorm/gamma"],
        "bert.pooler.dense.weight": expected["bert/pooler/dense/kernel"].T,
        "mlm.bias": expected["cls/predictions/output_bias"],
        "mlm.norm.bias": expected["cls/predictions/transform/LayerNorm/beta"],
        "nsp.weight": expected["cls/seq_relationship/output_weights"],  # not transposed
    }
    for ours, want in checks.items():
        assert np.array_equal(params[ours].numpy(), want), ours


def test_google_to_hf_conversion_matches_transformers(tmp_path):
    code = main(["convert", "--from", str(FIXTURE), "--to", str(tmp_path / "hf")])
    assert code == 0
    theirs = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ours = BertForPreTraining.from_pretrained(str(FIXTURE))
    tok = load_tokenizer(tmp_path / "hf")
    assert tok.vocab == load_tokenizer(FIXTURE).vocab
    enc = tok.encode_batch(["the cat sat", "a dog ran"], pairs=["on the mat", "far away"])
    args = {k: torch.from_numpy(getattr(enc, k)) for k in
            ("input_ids", "token_type_ids", "attention_mask")}
    real = args["attention_mask"].bool()
    with torch.no_grad():
        a, b = ours(**args), theirs(**args)
    torch.testing.assert_close(a.prediction_logits[real], b.prediction_logits[real])
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits)
    encoder = BertModel.from_pretrained(str(FIXTURE))
    with torch.no_grad():
        torch.testing.assert_close(encoder(**args).pooler_output,
                                   theirs.bert(**args).pooler_output)
