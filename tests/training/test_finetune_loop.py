"""The fine-tuning loop's switches: layer-wise lr decay, re-initialisation, FGM, early
stopping, gradient accumulation, and aggregation over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import tiny_config

from bertforge.model.task_heads import BertForSequenceClassification
from bertforge.training.finetune import (
    EvalResult,
    FinetuneArgs,
    FinetuneError,
    FinetuneTask,
    apply_layer_decay,
    finetune,
    initialise_new_weights,
    reinit_top_layers,
)
from bertforge.training.finetune_search import aggregate, grid_name
from bertforge.training.optim import build_optimizer


def _toy_task(seed: int = 0, n: int = 64) -> FinetuneTask:
    """Label = whether token 7 occurs: learnable by a tiny model in a few dozen steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ids = [2, *rng.integers(10, 60, size=int(rng.integers(3, 9))).tolist(), 3]
        if i % 2:
            ids[1 + int(rng.integers(0, len(ids) - 2))] = 7
        rows.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "labels": i % 2})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(id2label={0: "no", 1: "yes"}))
    return accuracy_task("toy", model, rows)


def accuracy_task(name: str, model: torch.nn.Module, rows: list[dict]) -> FinetuneTask:
    """``model`` trained and scored (accuracy) on the same labelled ``rows``."""

    def evaluate(model: torch.nn.Module, predict: object) -> EvalResult:
        logits = np.stack(predict(rows)["logits"])
        gold = np.array([r["labels"] for r in rows])
        return EvalResult({"accuracy": float((logits.argmax(-1) == gold).mean())})

    return FinetuneTask(name, model, rows, evaluate, "accuracy")


def test_loop_learns_a_toy_task_and_logs(tmp_path: Path) -> None:
    args = FinetuneArgs(lr=3e-3, batch_size=8, epochs=8, progress=False, save_best=False)
    result = finetune(_toy_task(), args, tmp_path)
    assert result["accuracy"] >= 0.9
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sum("eval" in r for r in records) == 8
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs[-1] < max(lrs)  # linear decay after warm-up


def test_same_seed_same_result(tmp_path: Path) -> None:
    args = FinetuneArgs(lr=1e-3, batch_size=8, epochs=1, progress=False, save_best=False)
    a = finetune(_toy_task(), args, tmp_path / "a")
    b = finetune(_toy_task(), args, tmp_path / "b")
    assert a["accuracy"] == b["accuracy"]
    first = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0]
    assert first == (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0]


def test_early_stopping_and_accumulation(tmp_path: Path) -> None:
    args = FinetuneArgs(lr=1e-9, batch_size=4, grad_accum=2, epochs=10, patience=2,
                        progress=False, save_best=False, warmup_ratio=0.0)
    result = finetune(_toy_task(n=32), args, tmp_path)
    assert result["steps"] == 3 * 4  # 32 rows / (4 x 2) per epoch, stopped after 3 epochs


def test_layer_decay_scales_lr_by_depth() -> None:
    model = BertForSequenceClassification(tiny_config())  # 2 layers
    optimizer = build_optimizer(model, lr=1.0)
    apply_layer_decay(optimizer, model, 0.5)
    by_param = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert by_param[id(model.head.classifier.weight)] == 1.0
    assert by_param[id(model.bert.layers[1].attn.q.weight)] == 0.5
    assert by_param[id(model.bert.layers[0].attn.q.weight)] == 0.25
    assert by_param[id(model.bert.embeddings.word_embeddings.weight)] == 0.125
    decay = {g["weight_decay"] for g in optimizer.param_groups
             if any(p is model.bert.layers[0].attn.q.bias for p in g["params"])}
    assert decay == {0.0}


def test_reinit_top_layers_changes_only_the_top() -> None:
    model = BertForSequenceClassification(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_top_layers(model, 1)
    after = model.state_dict()
    assert torch.equal(before["bert.layers.0.attn.q.weight"], after["bert.layers.0.attn.q.weight"])
    assert not torch.equal(before["bert.layers.1.attn.q.weight"],
                           after["bert.layers.1.attn.q.weight"])
    with pytest.raises(FinetuneError, match="reinit_layers=5"):
        reinit_top_layers(model, 5)


def test_fgm_runs_and_restores_embeddings(tmp_path: Path) -> None:
    args = FinetuneArgs(lr=1e-3, batch_size=8, epochs=1, fgm_epsilon=1.0, progress=False,
                        save_best=False)
    result = finetune(_toy_task(n=16), args, tmp_path)
    assert np.isfinite(result["accuracy"])


def test_bad_settings_are_named() -> None:
    with pytest.raises(FinetuneError, match="warmup_ratio"):
        FinetuneArgs(warmup_ratio=1.5).check()
    with pytest.raises(FinetuneError, match="precision"):
        FinetuneArgs(precision="fp8").check()


def test_aggregate_over_seeds() -> None:
    runs = [{"accuracy": 0.8, "args": {"seed": 1}}, {"accuracy": 0.9, "args": {"seed": 2}}]
    summary = aggregate(runs, "accuracy")
    assert summary["best_seed"] == 2
    assert summary["stats"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["stats"]["accuracy"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert grid_name({"lr": 2e-5, "batch_size": 32, "epochs": 3}) == "lr2e-05_bs32_ep3"


def test_new_head_follows_the_run_seed_not_the_global_generator(tmp_path: Path) -> None:
    """A library caller builds the task model (random new head) without seeding, twice
    with different global generator states: ``finetune`` with one ``args.seed`` re-draws
    the head from that seed, so both runs end with identical weights. The encoder weights
    come from the checkpoint and are not touched."""
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config()).bert.save_pretrained(str(tmp_path / "enc"))
    toy = _toy_task(n=16)
    finals = []
    for i, global_seed in enumerate((11, 12)):
        torch.manual_seed(global_seed)
        with pytest.warns(UserWarning, match="initialised at random"):
            model = BertForSequenceClassification.from_pretrained(
                str(tmp_path / "enc"), id2label={0: "no", 1: "yes"})
        assert set(model.new_weights) == {"head.classifier.weight", "head.classifier.bias"}
        encoder = {k: v.clone() for k, v in model.bert.state_dict().items()}
        if i == 0:
            torch.manual_seed(99)
            assert initialise_new_weights(model) == ["head.classifier"]
            assert torch.equal(model.bert.state_dict()["embeddings.word_embeddings.weight"],
                               encoder["embeddings.word_embeddings.weight"])
        task = FinetuneTask("toy", model, toy.train_rows, toy.evaluate, "accuracy")
        args = FinetuneArgs(lr=1e-3, batch_size=8, epochs=1, seed=5, progress=False,
                            save_best=False)
        finetune(task, args, tmp_path / f"run{i}")
        finals.append(model.state_dict())
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key
