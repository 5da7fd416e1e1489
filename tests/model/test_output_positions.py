"""``output_positions``: the last layer computes only the rows a head reads (the masked
tokens of MLM, [CLS] for the pooler). Outputs and gradients equal the full computation
followed by a gather, on the padded and the unpadded path; the cases that cannot prune
(per-layer outputs, causal attention, packed rows) fall back to the full computation."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_config

from bertforge.model import BertForPreTraining, BertModel
from bertforge.model.bert import gather_positions
from bertforge.model.task_heads import BertForMultipleChoice, BertForSequenceClassification

TOL = dict(atol=1e-6, rtol=1e-5)


def batch(padded: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """6 rows of 20 tokens; with ``padded`` row b ends with 2b padding tokens (30% of the
    batch: the unpadded path), else no padding (the plain path)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (6, 20), generator=gen)
    mask = torch.ones_like(ids)
    if padded:
        for b in range(6):
            mask[b, 20 - 2 * b:] = 0
    types = (torch.arange(20) >= 9).long().expand(6, 20).clone()
    return {"input_ids": ids * mask, "token_type_ids": types * mask, "attention_mask": mask}


def positions(seed: int = 1) -> torch.Tensor:
    """[6, 4] positions among the real tokens of every row (repeats allowed)."""
    return torch.randint(0, 10, (6, 4), generator=torch.Generator().manual_seed(seed))


def rows_entering_last_ffn(model: BertModel, **kwargs: object) -> int:
    """How many token rows the last layer's feed-forward computes."""
    seen: list[int] = []
    hook = model.layers[-1].ffn.register_forward_hook(
        lambda mod, args, out: seen.append(args[0].shape[:-1].numel()))
    try:
        model(**kwargs)
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("padded", [False, True], ids=["plain", "unpadded"])
def test_outputs_equal_gathered_full_outputs(padded: bool) -> None:
    torch.manual_seed(0)
    model = BertModel(tiny_config(num_hidden_layers=3)).eval()
    inputs, pos = batch(padded), positions()
    full = model(**inputs)
    pruned = model(**inputs, output_positions=pos)
    assert pruned.last_hidden_state.shape == (6, 4, 32)
    torch.testing.assert_close(pruned.last_hidden_state,
                               gather_positions(full.last_hidden_state, pos), **TOL)
    torch.testing.assert_close(pruned.pooler_output, full.pooler_output, **TOL)
    # the last layer really ran on 6 x (1 + 4) rows, not on every token
    assert rows_entering_last_ffn(model, **inputs, output_positions=pos) == 6 * 5
    real = int(inputs["attention_mask"].sum())
    assert rows_entering_last_ffn(model, **inputs) == (real if padded else 6 * 20)


def test_no_positions_keeps_only_the_pooler() -> None:
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    inputs = batch(True)
    out = model(**inputs, output_positions=inputs["input_ids"].new_zeros(6, 0))
    assert out.last_hidden_state.shape == (6, 0, 32)
    torch.testing.assert_close(out.pooler_output, model(**inputs).pooler_output, **TOL)
    assert rows_entering_last_ffn(model, **inputs,
                                  output_positions=inputs["input_ids"].new_zeros(6, 0)) == 6


@pytest.mark.parametrize("padded", [False, True], ids=["plain", "unpadded"])
def test_pretraining_gradients_equal_the_full_computation(padded: bool) -> None:
    """MLM + NSP loss through the pruned last layer vs the same loss on the full output:
    every parameter's gradient agrees (dropout off, fp32)."""
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(num_hidden_layers=3))
    inputs, pos = batch(padded), positions()
    labels = torch.randint(5, 99, pos.shape, generator=torch.Generator().manual_seed(2))
    labels[0, 3] = -100
    nsp = torch.tensor([0, 1, 0, 1, 1, 0])

    def grads(prune: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        if prune:
            loss = model(**inputs, masked_positions=pos, labels=labels,
                         next_sentence_label=nsp).loss
        else:  # the reference: full encoder output, gathered afterwards
            out = model.bert(**inputs)
            hidden = gather_positions(out.last_hidden_state, pos)
            logits = model.mlm(hidden, model.bert.embeddings.word_embeddings.weight)
            loss = (torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                      ignore_index=-100)
                    + torch.nn.functional.cross_entropy(model.nsp(out.pooler_output), nsp))
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    pruned, full = grads(True), grads(False)
    assert pruned.keys() == full.keys()
    for name in full:
        torch.testing.assert_close(pruned[name], full[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("case", ["hidden_states", "attentions", "causal", "packed"])
def test_falls_back_where_it_cannot_prune(case: str) -> None:
    """Per-layer outputs need every row; causal and packed attention masks are not the
    [B, 1, 1, S] key mask the pruned layer uses. The result is still the gathered output."""
    torch.manual_seed(0)
    model = BertModel(tiny_config(is_causal=case == "causal")).eval()
    inputs, pos = batch(True), positions()
    extra: dict[str, object] = {}
    if case == "hidden_states":
        extra["output_hidden_states"] = True
    elif case == "attentions":
        extra["output_attentions"] = True
    elif case == "packed":
        extra["sequence_ids"] = (torch.arange(20) >= 9).long().expand(6, 20).clone()
    full = model(**inputs, **extra)
    out = model(**inputs, **extra, output_positions=pos)
    torch.testing.assert_close(out.last_hidden_state,
                               gather_positions(full.last_hidden_state, pos), **TOL)
    assert rows_entering_last_ffn(model, **inputs, **extra, output_positions=pos) == (
        rows_entering_last_ffn(model, **inputs, **extra))


def test_classifiers_that_read_the_pooler_prune() -> None:
    """[CLS]-pooled sequence classification and multiple choice compute one last-layer row
    per sequence and give the logits of the full computation."""
    torch.manual_seed(0)
    config = tiny_config(id2label={0: "a", 1: "b", 2: "c"})
    model = BertForSequenceClassification(config).eval()
    inputs = batch(True)
    full = model.head(model.bert(**inputs).pooler_output)
    torch.testing.assert_close(model(**inputs).logits, full, **TOL)
    assert rows_entering_last_ffn(model.bert, **inputs, output_positions=torch.zeros(
        6, 0, dtype=torch.long)) == 6

    choice = BertForMultipleChoice(config).eval()
    mc = {k: v.view(2, 3, 20) for k, v in inputs.items()}
    full = choice.head(choice.bert(**inputs).pooler_output).view(2, 3)
    torch.testing.assert_close(choice(**mc).logits, full, **TOL)


def test_export_encoder_prunes_like_the_model() -> None:
    """ONNX export's ``MaskedEncoder`` (the traceable encoder) prunes the last layer as
    BertModel does: the same rows and pooler output, the last layer on 1 + P rows."""
    from bertforge.inference.onnx_export import MaskedEncoder

    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    inputs, pos = batch(padded=True), positions()
    encoder = MaskedEncoder(model)
    with torch.no_grad():
        want = model(**inputs, output_positions=pos)
        got = encoder(**inputs, output_positions=pos)
        cls_only = encoder(**inputs, output_positions=pos[:, :0])
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, **TOL)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, **TOL)
    torch.testing.assert_close(cls_only.pooler_output, want.pooler_output, **TOL)
    seen: list[int] = []
    model.layers[-1].ffn.register_forward_hook(
        lambda mod, args, out: seen.append(args[0].shape[:-1].numel()))
    with torch.no_grad():
        encoder(**inputs, output_positions=pos)
        encoder(**inputs)
    assert seen == [6 * 5, 6 * 20]
