"""The pre-training objectives as sums over a micro-batch, so that losses can be
normalised by counts over the whole global batch.

Legend: B = instances in the micro-batch, S = sequence length, P = masked positions per
row, V = vocabulary size.

- ``mlm_nsp`` / ``mlm_sop``: masked-LM at the masked positions + the two-way sentence
  classifier (NSP and SOP differ only in how the data chose the label).
- ``mlm``: masked-LM only.
- ``ltr``: a left-to-right language model (the config has ``is_causal=True``): the MLM
  head at every position t predicts token t + 1 of the *unmasked* sequence; no NSP.

Averaging per micro-batch would weigh a micro-batch with few masked tokens as much as
one with many; dividing the summed loss by the global count of predictions makes B
instances in one micro-batch, in k accumulated micro-batches or on k processes give the
same gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
STAT_NAMES = ("mlm_loss_sum", "mlm_count", "mlm_correct", "nsp_loss_sum", "nsp_count",
              "nsp_correct", "tokens")


@dataclass
class ObjectiveSums:
    """Summed losses (with graph) and detached statistics of one micro-batch."""

    mlm_loss_sum: torch.Tensor  # scalar, sum of token cross-entropies (nats)
    nsp_loss_sum: torch.Tensor  # scalar (0 without a sentence objective)
    stats: torch.Tensor  # float64 [len(STAT_NAMES)], detached


def uses_nsp(objective: str) -> bool:
    return objective in ("mlm_nsp", "mlm_sop")


def prepare(batch: dict[str, torch.Tensor], objective: str) -> dict[str, torch.Tensor]:
    """The model inputs and targets of ``objective`` from a collated batch.

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask`` [B, S], ``labels``
    ([B, P] at ``masked_positions`` for MLM, [B, S] shifted for LTR), and for the MLM
    objectives ``masked_positions`` [B, P]; ``next_sentence_label`` [B] when used;
    ``sequence_ids`` [B, S] for packed rows (several segments per row).
    """
    out = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    if "sequence_ids" in batch:
        if objective != "mlm":
            raise ValueError(f"packed rows train --objective mlm only, not {objective}")
        out["sequence_ids"] = batch["sequence_ids"]
    if objective == "ltr":
        ids = unmask(batch)
        out["input_ids"] = ids
        out["labels"] = next_token_labels(ids, batch["attention_mask"])
        return out
    out["masked_positions"] = batch["masked_positions"]
    out["labels"] = batch["masked_labels"]
    if uses_nsp(objective):
        out["next_sentence_label"] = batch["next_sentence_label"]
    return out


def unmask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The original ``input_ids`` [B, S]: masked labels written back at their positions."""
    ids = batch["input_ids"].clone()
    labels, positions = batch["masked_labels"], batch["masked_positions"]
    keep = labels != IGNORE_INDEX
    ids.scatter_(1, positions, torch.where(keep, labels, ids.gather(1, positions)))
    return ids


def next_token_labels(ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, S] targets: position t predicts ``ids[t + 1]``; -100 at the last real token,
    padding and the end."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = torch.where(attention_mask[:, 1:].bool(), ids[:, 1:], IGNORE_INDEX)
    return labels


def top1_hits(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """How many ``valid`` rows of ``logits`` [N, V] have their label's score at the row's
    maximum: argmax accuracy, except that a label tied with another maximum counts as a hit.
    ``amax`` + ``gather`` instead of ``argmax``: torch's CPU argmax over an 8,000-word
    vocabulary is about ten times slower than amax (bench/RESULTS.md, session 7)."""
    picked = logits.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)
    return _hits(picked, logits.amax(-1), valid)


def _hits(picked: torch.Tensor, top: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Valid rows whose label's score ``picked`` reaches the row's maximum ``top``."""
    return ((picked >= top) & valid).sum()


class _MaskedLMLoss(torch.autograd.Function):
    """Summed cross-entropy and top-1 hits of logits [N, V] with one softmax pass.

    ``F.cross_entropy`` runs ``exp`` over the [N, V] logits twice (log_softmax forward, and
    its backward) and zero-fills an [N, V] gradient; the argmax for the accuracy is a
    third slow pass on the CPU. Here the forward keeps the softmax (``torch.softmax`` works
    row by row in cache, where a subtract, an ``exp`` and a sum are three passes over the
    whole [N, V] array) and the backward scales it in place into the gradient: 10.7 ->
    6.3 ms for [640, 8,000] on two Zen 3 cores with the three passes (bench/RESULTS.md,
    session 7), and about another millisecond less with the softmax (session 9). Rows
    labelled IGNORE_INDEX add nothing. The loss is -log p(label); where p underflows
    (a label more than ~87 nats below the row's best) that row is computed as
    log-sum-exp minus the label's logit instead.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = labels != IGNORE_INDEX
        safe = labels.clamp(min=0).unsqueeze(1)
        picked = logits.gather(1, safe).squeeze(1)
        top = logits.amax(-1)
        probs = torch.softmax(logits, -1)
        nll = probs.gather(1, safe).squeeze(1).log().neg_()
        lost = (nll > _LOG_TINY) & valid  # p(label) too small for fp32's log
        if bool(lost.any()):
            rows = lost.nonzero().squeeze(1)
            nll[rows] = torch.logsumexp(logits[rows], -1) - picked[rows]
        loss = torch.where(valid, nll, 0.0).sum()
        hits = _hits(picked, top, valid)
        ctx.save_for_backward(probs, safe, valid)
        ctx.mark_non_differentiable(hits)
        ctx.used = False
        return loss, hits

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor,
                 _grad_hits: torch.Tensor) -> tuple[torch.Tensor, None]:
        if ctx.used:
            raise RuntimeError("masked_lm_loss: backward twice through one forward is not "
                               "supported (its buffer became the first gradient)")
        ctx.used = True
        probs, safe, valid = ctx.saved_tensors
        scale = torch.where(valid, grad_loss, 0.0).to(probs.dtype).unsqueeze(1)
        grad = probs.mul_(scale)
        grad.scatter_add_(1, safe, scale.neg())
        return grad, None


# -log of the smallest normal fp32 (1.2e-38): below it p(label) loses precision or is 0
_LOG_TINY = 87.0


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of cross-entropies, top-1 hits) of fp32 ``logits`` [N, V] against ``labels``
    [N] (IGNORE_INDEX rows skipped). On the CPU one softmax pass (``_MaskedLMLoss``);
    elsewhere ``F.cross_entropy(..., reduction="sum")`` and ``top1_hits`` (the fused
    form is not measured on a GPU)."""
    if logits.device.type == "cpu":
        return _MaskedLMLoss.apply(logits, labels)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, top1_hits(logits.detach(), labels, labels != IGNORE_INDEX)


def objective_sums(model: nn.Module, inputs: dict[str, torch.Tensor],
                   objective: str) -> ObjectiveSums:
    """Forward ``model`` (a ``BertForPreTraining``) and sum the losses of ``inputs``."""
    packed = {"sequence_ids": inputs["sequence_ids"]} if "sequence_ids" in inputs else {}
    out = model(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"],
                masked_positions=inputs.get("masked_positions"), **packed)
    labels = inputs["labels"]
    logits = out.prediction_logits.flatten(0, 1).float()  # [B*P or B*S, V]
    valid = labels.flatten() != IGNORE_INDEX
    mlm_sum, mlm_correct = masked_lm_loss(logits, labels.flatten())
    nsp_sum = mlm_sum.new_zeros(())
    nsp_count = nsp_correct = torch.zeros((), device=labels.device)
    if "next_sentence_label" in inputs:
        nsp_label = inputs["next_sentence_label"].view(-1)
        nsp_logits = out.seq_relationship_logits.float()  # [B, 2]
        nsp_sum = F.cross_entropy(nsp_logits, nsp_label, reduction="sum")
        nsp_count = torch.tensor(float(nsp_label.numel()), device=labels.device)
        nsp_correct = (nsp_logits.argmax(-1) == nsp_label).sum()
    tokens = inputs["attention_mask"].sum()  # real tokens: padding never counts
    stats = torch.stack([mlm_sum.detach().double(), valid.sum().double(), mlm_correct.double(),
                         nsp_sum.detach().double(), nsp_count.double(), nsp_correct.double(),
                         tokens.double()])
    return ObjectiveSums(mlm_sum, nsp_sum, stats)


def prediction_counts(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """float64 [2]: MLM predictions and sentence labels in ``inputs`` (before forward)."""
    mlm = (inputs["labels"] != IGNORE_INDEX).sum()
    nsp = inputs["next_sentence_label"].numel() if "next_sentence_label" in inputs else 0
    return torch.tensor([float(mlm), float(nsp)], dtype=torch.float64)


def summarize(stats: torch.Tensor) -> dict[str, float]:
    """Mean losses and accuracies from summed ``stats`` [len(STAT_NAMES)]."""
    s = dict(zip(STAT_NAMES, stats.tolist(), strict=True))
    mlm = s["mlm_loss_sum"] / max(s["mlm_count"], 1.0)
    nsp = s["nsp_loss_sum"] / s["nsp_count"] if s["nsp_count"] else None
    return {"loss": mlm + (nsp or 0.0), "mlm_loss": mlm, "nsp_loss": nsp,
            "mlm_acc": s["mlm_correct"] / max(s["mlm_count"], 1.0),
            "nsp_acc": s["nsp_correct"] / s["nsp_count"] if s["nsp_count"] else None,
            "tokens": s["tokens"]}
