"""Our encoder and pre-training heads against transformers' on random tiny models.

Weights go ours -> save_pretrained -> transformers.from_pretrained, so these tests also
exercise the Hugging Face key table. Every output is compared at real (non-pad) tokens.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_config

from bertforge.model import BertForPreTraining, BertModel

transformers = pytest.importorskip("transformers")


def batch(vocab: int = 99, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 19), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 9:] = 1
    return ids, types, mask


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_bert_model_matches_transformers(tmp_path, act):
    torch.manual_seed(0)
    ours = BertModel(tiny_config(hidden_act=act)).eval()
    ours.save_pretrained(str(tmp_path))
    theirs = transformers.BertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids, types, mask = batch()
    with torch.no_grad():
        a = ours(ids, types, mask, output_hidden_states=True, output_attentions=True)
        b = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask,
                   output_hidden_states=True, output_attentions=True)
    real = mask.bool()
    torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real])
    torch.testing.assert_close(a.pooler_output, b.pooler_output)
    assert len(a.hidden_states) == len(b.hidden_states) == 3
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(x[real], y[real])
    for x, y in zip(a.attentions, b.attentions, strict=True):
        # probabilities of real queries over all keys; pads get exactly zero weight
        torch.testing.assert_close(x.transpose(1, 2)[real], y.transpose(1, 2)[real])


def test_pretraining_heads_and_loss_match_transformers(tmp_path):
    torch.manual_seed(1)
    ours = BertForPreTraining(tiny_config()).eval()
    ours.save_pretrained(str(tmp_path))
    theirs = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()
    ids, types, mask = batch(seed=3)
    labels = torch.full_like(ids, -100)
    labels[0, [2, 5, 7]] = ids[0, [2, 5, 7]]
    labels[1, [1, 11]] = ids[1, [1, 11]]
    labels[2, [3]] = ids[2, [3]]
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        a = ours(ids, types, mask, labels=labels, next_sentence_label=nsp)
        b = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
                   next_sentence_label=nsp)
    real = mask.bool()
    torch.testing.assert_close(a.prediction_logits[real], b.prediction_logits[real])
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits)
    torch.testing.assert_close(a.loss, b.loss)


def test_masked_positions_path_equals_full_logits():
    torch.manual_seed(2)
    model = BertForPreTraining(tiny_config()).eval()
    ids, types, mask = batch(seed=4)
    positions = torch.tensor([[1, 2, 0], [3, 0, 0], [1, 2, 3]])
    labels = torch.tensor([[7, 8, -100], [9, -100, -100], [10, 11, 12]])
    with torch.no_grad():
        full = model(ids, types, mask)
        part = model(ids, types, mask, masked_positions=positions, labels=labels)
    want = full.prediction_logits.gather(1, positions[..., None].expand(-1, -1, 99))
    torch.testing.assert_close(part.prediction_logits, want)
    flat = want.flatten(0, 1)[labels.flatten() != -100]
    ce = torch.nn.functional.cross_entropy(flat, labels.flatten()[labels.flatten() != -100])
    torch.testing.assert_close(part.mlm_loss, ce)


def test_weights_tied_and_initialised_as_bert():
    torch.manual_seed(0)
    config = tiny_config(hidden_size=128, num_attention_heads=2, intermediate_size=512,
                         vocab_size=3000)
    model = BertForPreTraining(config)
    names = dict(model.named_parameters())
    assert "mlm.decoder_weight" not in names  # one owner: the word embeddings
    word = model.bert.embeddings.word_embeddings.weight
    assert abs(float(word.std()) - 0.02) < 0.0005  # 384k draws: std error ~2e-5
    assert abs(float(word.mean())) < 0.0002
    for name, p in names.items():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        if "norm.weight" in name:
            assert torch.all(p == 1), name


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    model = BertModel(tiny_config(is_causal=True)).eval()
    ids, types, mask = batch()
    changed = ids.clone()
    changed[:, 10:] = 7
    with torch.no_grad():
        a = model(ids, types).last_hidden_state
        b = model(changed, types).last_hidden_state
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_sequence_longer_than_positions_is_a_clear_error():
    model = BertModel(tiny_config())
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    ids = torch.randint(5, 99, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(padded, attention_mask=mask).last_hidden_state[:, :7]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_unpadded_path_computes_the_same_function(causal):
    """Dropping padding before the first layer changes nothing at real tokens (fp32, 1e-5);
    padded positions come back as zeros."""
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(is_causal=causal)).eval()
    ids, types, mask = batch(seed=7)
    positions = torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, 3]])
    with torch.no_grad():
        fast = model(ids, types, mask, masked_positions=positions)
        model.bert.unpad = False
        slow = model(ids, types, mask, masked_positions=positions)
    torch.testing.assert_close(fast.prediction_logits, slow.prediction_logits,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.seq_relationship_logits, slow.seq_relationship_logits,
                               atol=1e-5, rtol=1e-5)
    model.bert.unpad = True
    with torch.no_grad():
        hidden = model.bert(ids, types, mask).last_hidden_state
    assert torch.count_nonzero(hidden[~mask.bool()]) == 0


def test_unpadding_is_chosen_by_device_and_padding():
    """Unpadding runs on the CPU when over 10% of the batch is padding, and not on other
    devices (CUDA measured faster padded, bench/RESULTS.md): checked on the meta device."""
    model = BertModel(tiny_config())
    _, _, mask = batch(seed=7)
    assert float(mask.float().mean()) < 0.9
    assert model._unpadded(mask, None, False) is not None
    assert model._unpadded(torch.ones_like(mask), None, False) is None  # no padding
    assert model._unpadded(mask.to("meta"), None, False) is None
    assert model._unpadded(mask, None, True) is None  # per-layer outputs asked for


def test_unpadded_training_step_matches_gradients():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config())
    ids, types, mask = batch(seed=8)
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, -100) * mask - 100 * (1 - mask)
    grads = []
    for unpad in (True, False):
        model.zero_grad()
        model.bert.unpad = unpad
        model(ids, types, mask, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 30
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_compiled_model_takes_the_plain_path_and_agrees():
    """Under torch.compile the data-dependent shortcuts (all-ones mask, unpadding) are
    skipped; the compiled function equals the eager one."""
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    ids, types, mask = batch(seed=9)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        want = model(ids, types, mask).last_hidden_state
        got = compiled(ids, types, mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
