"""Audit 4 of the fine-tuning switches, on real GLUE (RTE) sentences: FGM restores the
word embeddings to the bit and adds the gradient of the loss at the perturbation made from
this micro-batch's own gradient (with accumulation and a loss scaler too); gradient
accumulation updates with the last, incomplete group of an epoch instead of carrying it
into the next, and a resume right after that update does not repeat it; the logged
learning rate is the peak group's under layer-wise decay; the switches that need a
trainable encoder refuse a frozen one."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from _helpers import need_data, tiny_config
from test_finetune_loop import accuracy_task

from bertforge.model.task_heads import BertFeatureTagger, BertForSequenceClassification
from bertforge.tasks.batching import collate
from bertforge.training import finetune as ft
from bertforge.training.finetune import EvalResult, FinetuneArgs, FinetuneError, FinetuneTask


def _rte_rows(tokenizer: object, n: int, max_length: int = 48) -> list[dict]:
    """The first ``n`` RTE training pairs as rows (label 1 = not entailment)."""
    path = need_data("glue", "RTE", "train.tsv")
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    batch = tokenizer.encode_batch([r["sentence1"] for r in records],
                                   [r["sentence2"] for r in records], max_length=max_length,
                                   truncation="longest_first")
    return [{"input_ids": e.ids, "token_type_ids": e.type_ids,
             "labels": int(r["label"] == "not_entailment")}
            for e, r in zip(batch.encodings, records, strict=True)]


def _tokenizer() -> object:
    from bertforge.tokenization import load_tokenizer
    return load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))


def _rte_task(n: int, seed: int = 0) -> FinetuneTask:
    """A tiny random classifier (dropout off) over real RTE pairs."""
    rows = _rte_rows(_tokenizer(), n)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, id2label={0: "e", 1: "n"}))
    return accuracy_task("rte", model, rows)


# ------------------------------------------------------------------ FGM
def test_fgm_restores_the_word_embeddings_bit_exactly(minilm_dir: Path) -> None:
    from bertforge.tokenization import load_tokenizer
    rows = _rte_rows(load_tokenizer(minilm_dir), 8)
    model = BertForSequenceClassification.from_pretrained(str(minilm_dir),
                                                          id2label={0: "e", 1: "n"})
    model.train()
    batch = collate(rows)
    weight = model.bert.embeddings.word_embeddings.weight
    before = weight.detach().clone()
    model(**batch).loss.backward()
    ft.fgm_step(model, batch, 1.0, 1.0, nullcontext())
    assert torch.equal(weight.detach(), before)  # (w + d) - d is not w in floating point


def _reference_grads(model: torch.nn.Module, batches: list[dict], epsilon: float
                     ) -> dict[str, torch.Tensor]:
    """Miyato et al.'s FGM from first principles, each micro-batch on its own: the clean
    loss's gradient plus the gradient at w + eps g_b / ||g_b||, g_b = that micro-batch's
    gradient of the word embeddings; each micro-batch weighted 1 / len(batches)."""
    total: dict[str, torch.Tensor] = {}
    weight_name = "bert.embeddings.word_embeddings.weight"
    for batch in batches:
        clean = copy.deepcopy(model)
        clean.zero_grad(set_to_none=True)
        (clean(**batch).loss / len(batches)).backward()
        g = dict(clean.named_parameters())[weight_name].grad
        adv = copy.deepcopy(model)
        with torch.no_grad():
            dict(adv.named_parameters())[weight_name].add_(epsilon * g / g.norm())
        (adv(**batch).loss / len(batches)).backward()
        for (name, p), (_, q) in zip(clean.named_parameters(), adv.named_parameters(),
                                     strict=True):
            if p.grad is not None:
                total[name] = total.get(name, 0) + p.grad + q.grad
    return total


def _capture_steps(monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Record every micro-batch the loop trains on, and at each optimizer step (before
    clipping) the parameters, the gradients and the micro-batches since the last step."""
    batches: list[dict] = []
    steps: list[dict] = []
    real_batches, real_step = ft._epoch_batches, ft._optimizer_step

    def recording_batches(*a: object, **k: object):  # noqa: ANN202
        for batch in real_batches(*a, **k):
            batches.append(batch)
            yield batch

    def recording_step(model: torch.nn.Module, *a: object, **k: object) -> None:
        used = sum(len(s["batches"]) for s in steps)
        steps.append({"params": copy.deepcopy(model),
                      "grads": {n: p.grad.clone() for n, p in model.named_parameters()
                                if p.grad is not None},
                      "batches": batches[used:]})
        real_step(model, *a, **k)

    monkeypatch.setattr(ft, "_epoch_batches", recording_batches)
    monkeypatch.setattr(ft, "_optimizer_step", recording_step)
    return batches, steps


def _assert_grads(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-7, msg=name)


def test_fgm_with_accumulation_perturbs_by_each_micro_batchs_own_gradient(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, steps = _capture_steps(monkeypatch)
    args = FinetuneArgs(lr=1e-2, batch_size=4, grad_accum=2, epochs=1, max_steps=2,
                        fgm_epsilon=1.0, group_by_length=False, progress=False,
                        save_best=False, warmup_ratio=0.0)
    ft.finetune(_rte_task(16), args, tmp_path)
    assert len(steps) == 2
    for step in steps:
        assert len(step["batches"]) == 2
        _assert_grads(step["grads"], _reference_grads(step["params"], step["batches"], 1.0))


def test_fgm_scales_the_adversarial_loss_with_the_loss_scaler() -> None:
    task = _rte_task(4)
    model = task.model.train()
    batch = collate(task.train_rows)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    scaler.scale(model(**batch).loss).backward()
    ft.fgm_step(model, batch, 1.0, 1.0, nullcontext(), scaler=scaler)
    got = {n: p.grad / 2.0 ** 10 for n, p in model.named_parameters() if p.grad is not None}
    want = _reference_grads(_rte_task(4).model.train(), [batch], 1.0)
    _assert_grads(got, want)


# ------------------------------------------------------------------ accumulation
def test_accumulation_updates_with_the_epochs_last_incomplete_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 rows in micro-batches of 4 are 10 per epoch; with 3 per update, the 10th makes an
    update of its own (its mean gradient), as ``_steps`` plans (4 per epoch), and the
    linear schedule ends at 0."""
    _, steps = _capture_steps(monkeypatch)
    args = FinetuneArgs(lr=1e-3, batch_size=4, grad_accum=3, epochs=2, progress=False,
                        save_best=False, warmup_ratio=0.0, log_every=1)
    result = ft.finetune(_rte_task(40), args, tmp_path)
    assert result["steps"] == 8
    assert [len(s["batches"]) for s in steps] == [3, 3, 3, 1, 3, 3, 3, 1]
    for step in steps:
        model = step["params"]
        model.zero_grad(set_to_none=True)
        loss = sum(model(**b).loss for b in step["batches"]) / len(step["batches"])
        loss.backward()
        _assert_grads(step["grads"], {n: p.grad for n, p in model.named_parameters()
                                      if p.grad is not None})
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["lr"] for r in records if "lr" in r][-1] == 0.0


# ------------------------------------------------------------------ logging, settings
def test_logged_lr_is_the_peak_groups_under_layer_decay(tmp_path: Path) -> None:
    args = FinetuneArgs(lr=1e-3, batch_size=4, epochs=1, layer_decay=0.5, schedule="constant",
                        warmup_ratio=0.0, progress=False, save_best=False, log_every=1)
    ft.finetune(_rte_task(8), args, tmp_path)
    lrs = [json.loads(line).get("lr") for line in (tmp_path / "metrics.jsonl").open()]
    assert [lr for lr in lrs if lr is not None] == [1e-3, 1e-3]


@pytest.mark.parametrize("switch", [{"fgm_epsilon": 1.0}, {"reinit_layers": 1}])
def test_switches_needing_a_trainable_encoder_refuse_the_feature_tagger(
        tmp_path: Path, switch: dict) -> None:
    config = tiny_config(id2label={0: "O", 1: "B-PER"}, extra={"lstm_size": 8})
    rows = [{"input_ids": [2, 5, 3], "labels": [-100, 1, -100]}]
    task = FinetuneTask("ner-feature-bilstm", BertFeatureTagger(config), rows,
                        lambda m, p: EvalResult({"f1": 0.0}), "f1")
    args = FinetuneArgs(progress=False, save_best=False, **switch)
    with pytest.raises(FinetuneError, match="frozen"):
        ft.finetune(task, args, tmp_path)


def test_resume_after_the_epochs_last_incomplete_update_does_not_repeat_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """Killed between the epoch's last (incomplete-group) update and its evaluation, the
    resumed run ends with the bits of one never interrupted."""
    args = FinetuneArgs(lr=1e-3, batch_size=4, grad_accum=3, epochs=2, progress=False,
                        save_best=False, warmup_ratio=0.0, save_every=1)
    whole = _rte_task(40)
    ft.finetune(whole, args, tmp_path / "whole")

    real_evaluate = ft._evaluate

    def killed(*a: object, **k: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(_rte_task(40), args, tmp_path / "killed")
    assert (tmp_path / "killed" / "checkpoint-4").is_dir()
    monkeypatch.setattr(ft, "_evaluate", real_evaluate)
    resumed = _rte_task(40)
    result = ft.finetune(resumed, dataclasses.replace(args, resume=True), tmp_path / "killed")
    assert result["steps"] == 8
    for (name, a), (_, b) in zip(whole.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
