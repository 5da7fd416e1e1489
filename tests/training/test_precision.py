"""``--precision auto``: bf16 autocast on a CUDA device with bf16, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from bertforge.training.precision import resolve_precision


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept(name):
    assert resolve_precision(name, "cpu") == name
    assert resolve_precision(name, torch.device("cuda")) == name


def test_auto_is_fp32_on_the_cpu():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_card(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: has_bf16)
    assert resolve_precision("auto", "cuda:0") == expected


def test_a_run_records_the_precision_it_resolved(tmp_path):
    from test_pretrain_loop import build_corpus, run_config

    from bertforge.training import checkpointing as ckpt
    from bertforge.training.pretrain import pretrain
    from bertforge.training.pretrain_config import PretrainConfig

    assert PretrainConfig(data="d", out="o").precision == "auto"
    corpus = build_corpus(tmp_path / "corpus")
    cfg = run_config(corpus, tmp_path / "run", precision="auto", max_steps=3, save_every=3,
                     eval_every=3)
    pretrain(cfg)
    state = ckpt.load_training_state(ckpt.find_latest(tmp_path / "run"), verified=True)
    assert state["run_config"]["precision"] == "fp32"
