"""TensorBoard logs of a pre-training run hold the numbers of metrics.jsonl; without the
optional ``tensorboard`` package a run says so in one line and logs metrics.jsonl only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_pretrain_loop import build_corpus, run_config

from bertforge.training.pretrain import pretrain
from bertforge.training.tracking import MetricsLog, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    corpus = build_corpus(tmp_path / "corpus", masking="static")
    out = tmp_path / "run"
    pretrain(run_config(corpus, out, max_steps=4, log_every=1, eval_every=2, save_every=4,
                        tensorboard=True))
    records = read_metrics(out / "metrics.jsonl")
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "mlm_loss", "nsp_loss", "lr", "tokens", "eval_mlm_acc",
            "eval_nsp_acc"} <= tags
    for tag in tags:
        logged = [(r["step"], r[tag]) for r in records if isinstance(r.get(tag), (int, float))]
        seen = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in seen] == [s for s, _ in logged], tag
        # event files store float32
        assert [v for _, v in seen] == pytest.approx([v for _, v in logged], rel=1e-6), tag
    assert [e.step for e in events.Scalars("eval_mlm_acc")] == [2, 4]


def test_without_tensorboard_a_one_line_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    log = MetricsLog(tmp_path, enabled=True, tensorboard=True)
    log.write({"step": 1, "loss": 2.5})
    log.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'tensorboard' package is not installed" in err
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 2.5}]
    assert not Path(tmp_path / "tensorboard").exists()
    MetricsLog(tmp_path, enabled=True, tensorboard=False).close()  # asked for none: silent
    assert capsys.readouterr().err == ""
