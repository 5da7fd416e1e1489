"""The pre-training statistics: MLM top-1 hits counted without argmax."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bertforge.training.pretrain_objectives import IGNORE_INDEX, masked_lm_loss, top1_hits


def test_top1_hits_equals_argmax_accuracy_on_real_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(640, 8000, generator=gen)
    labels = torch.randint(0, 8000, (640,), generator=gen)
    # make a third of the rows right, as a trained model's would be
    labels[::3] = logits[::3].argmax(-1)
    labels[1::7] = IGNORE_INDEX
    valid = labels != IGNORE_INDEX
    expected = (logits.argmax(-1) == labels)[valid].sum()
    assert int(top1_hits(logits, labels, valid)) == int(expected) > 150


def test_top1_hits_ignores_padding_rows_and_counts_a_tie_as_a_hit() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0], [5.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    labels = torch.tensor([2, 0, IGNORE_INDEX])
    assert int(top1_hits(logits, labels, labels != IGNORE_INDEX)) == 2


def test_masked_lm_loss_matches_cross_entropy_and_its_gradient() -> None:
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(300, 8000, generator=gen) * 4
    labels = torch.randint(0, 8000, (300,), generator=gen)
    labels[1::3] = base[1::3].argmax(-1)
    labels[::5] = IGNORE_INDEX
    ours = base.clone().requires_grad_()
    ref = base.clone().requires_grad_()
    loss, hits = masked_lm_loss(ours, labels)
    expected = F.cross_entropy(ref, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    (2.5 * loss).backward()
    (2.5 * expected).backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-3)
    valid = labels != IGNORE_INDEX
    assert int(hits) == int((base.argmax(-1) == labels)[valid].sum()) > 60
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-5, atol=1e-5)
    assert ours.grad[::5].abs().max() == 0  # ignored rows


def test_pretraining_step_loss_is_the_same_with_the_fused_mlm_loss(monkeypatch) -> None:
    """One model, one batch: objective_sums on the CPU (fused loss) equals the generic
    path (F.cross_entropy, used on other devices), loss and gradients."""
    from bertforge.config import preset
    from bertforge.model import BertForPreTraining
    from bertforge.training import pretrain_objectives as po

    torch.manual_seed(0)
    model = BertForPreTraining(preset("tiny", vocab_size=500, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0))
    inputs = {"input_ids": torch.randint(5, 500, (4, 32)),
              "token_type_ids": torch.zeros(4, 32, dtype=torch.long),
              "attention_mask": torch.ones(4, 32, dtype=torch.long),
              "masked_positions": torch.randint(1, 31, (4, 6)),
              "labels": torch.randint(5, 500, (4, 6)),
              "next_sentence_label": torch.tensor([0, 1, 1, 0])}
    inputs["labels"][0, 4:] = IGNORE_INDEX
    fused = po.objective_sums(model, inputs, "mlm_nsp")
    fused.mlm_loss_sum.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    monkeypatch.setattr(po, "masked_lm_loss", lambda logits, labels: (
        F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum"),
        top1_hits(logits.detach(), labels, labels != IGNORE_INDEX)))
    plain = po.objective_sums(model, inputs, "mlm_nsp")
    plain.mlm_loss_sum.backward()
    torch.testing.assert_close(fused.mlm_loss_sum, plain.mlm_loss_sum)
    torch.testing.assert_close(fused.stats, plain.stats)
    for a, b in zip(grads, [p.grad for p in model.parameters() if p.grad is not None],
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_masked_lm_loss_of_a_batch_without_predictions_is_zero_with_zero_gradient() -> None:
    logits = torch.randn(5, 40).requires_grad_()
    labels = torch.full((5,), IGNORE_INDEX)
    loss, hits = masked_lm_loss(logits, labels)
    loss.backward()
    assert float(loss) == 0.0 and int(hits) == 0
    assert logits.grad is not None and not logits.grad.any()


def test_masked_lm_loss_is_exact_where_the_labels_probability_underflows() -> None:
    """A label 150-300 nats below its row's best has p = 0 in fp32: the loss stays the
    cross-entropy (finite), and the gradient is still softmax minus one-hot."""
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(40, 500, generator=gen)
    labels = torch.randint(0, 500, (40,), generator=gen)
    far = torch.arange(0, 40, 4)
    base[far, labels[far]] -= torch.linspace(150.0, 300.0, len(far))
    labels[3] = IGNORE_INDEX
    ours = base.clone().requires_grad_()
    ref = base.clone().requires_grad_()
    loss, _ = masked_lm_loss(ours, labels)
    expected = F.cross_entropy(ref, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    loss.backward()
    expected.backward()
    assert torch.isfinite(loss) and float(loss) > 150 * len(far)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-5, atol=1e-6)
