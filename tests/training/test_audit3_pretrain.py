"""Audit 3 of the pre-training loop on real text: the last step of a run is recorded
and evaluated however the run stops, a phase 2 (--init-state) gets its own --max-time,
a spent budget says so on resume, and bad settings or paths get a clear message and leave
no empty --out behind."""

from __future__ import annotations

import pytest
from test_pretrain_loop import build_corpus, run_config

from bertforge.training.checkpointing import CheckpointCorrupt
from bertforge.training.pretrain import PreTrainer, pretrain
from bertforge.training.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus_audit3"), masking="static")


def _stop_after(monkeypatch, step: int) -> None:
    """--max-time "runs out" once ``step`` steps are done (the clock made deterministic)."""
    monkeypatch.setattr(PreTrainer, "_time_up", lambda self: self.progress.step >= step)


def test_the_last_step_is_recorded_and_evaluated_however_the_run_stops(
        corpus, tmp_path, monkeypatch):
    settings = dict(batch_size=8, log_every=5, eval_every=100, eval_batches=2,
                    save_every=100)
    by_steps = tmp_path / "steps"
    pretrain(run_config(corpus, by_steps, max_steps=7, **settings))
    records = read_metrics(by_steps / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 7]
    assert "eval_mlm_acc" in records[-1]  # the final model is scored on --eval-data

    _stop_after(monkeypatch, 7)
    by_time = tmp_path / "time"
    result = pretrain(run_config(corpus, by_time, max_steps=1000, max_time=60.0, **settings))
    records = read_metrics(by_time / "metrics.jsonl")
    assert result.step == 7
    assert [r["step"] for r in records] == [5, 7]  # step 7's losses were lost before
    assert "eval_mlm_acc" in records[-1] and result.last["step"] == 7


def test_resuming_a_spent_time_budget_says_so(corpus, tmp_path, monkeypatch, capsys):
    _stop_after(monkeypatch, 3)
    cfg = run_config(corpus, tmp_path / "run", max_steps=1000, max_time=60.0, batch_size=8,
                     eval_batches=1)
    pretrain(cfg)
    capsys.readouterr()
    result = pretrain(run_config(corpus, tmp_path / "run", max_steps=1000, max_time=60.0,
                                 batch_size=8, eval_batches=1, resume="latest"))
    assert result.step == 3
    assert "--max-time 60 minutes already used by this run" in capsys.readouterr().err


def test_phase_two_gets_its_own_time_budget(corpus, tmp_path, monkeypatch):
    """--init-state takes phase 1's step, optimiser and schedule, not its clock: an hour of
    phase 1 used to leave a phase 2 with --max-time 1 no time at all (0 steps)."""
    with monkeypatch.context() as m:
        m.setattr(PreTrainer, "_elapsed", lambda self: 3600.0)  # phase 1 took an hour
        pretrain(run_config(corpus, tmp_path / "phase1", max_steps=3, batch_size=8,
                            save_every=3, eval_batches=1))
    phase2 = pretrain(run_config(corpus, tmp_path / "phase2", max_steps=5, max_time=1.0,
                                 batch_size=8, eval_batches=1,
                                 init=str(tmp_path / "phase1" / "checkpoint-3"),
                                 init_state=True, model_config=None))
    assert phase2.step == 5
    assert [r["step"] for r in read_metrics(tmp_path / "phase2" / "metrics.jsonl")] == [5]


def test_bad_settings_and_paths_get_clear_messages_and_no_empty_out(corpus, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="warmup_steps"):
        pretrain(run_config(corpus, out, max_steps=5, warmup_steps=10))
    with pytest.raises(FileNotFoundError, match="no such shard directory"):
        pretrain(run_config(corpus, out, data=str(tmp_path / "missing")))
    assert not out.exists()
    with pytest.raises(CheckpointCorrupt, match="no such checkpoint directory"):
        pretrain(run_config(corpus, out, resume=str(tmp_path / "checkpoint-999")))
    assert not out.exists()

    done = tmp_path / "done"
    pretrain(run_config(corpus, done, max_steps=2, warmup_steps=1, batch_size=8,
                        eval_batches=1))
    # a model directory is not a checkpoint "whose write was cut short"
    with pytest.raises(CheckpointCorrupt, match="holds model weights only"):
        pretrain(run_config(corpus, tmp_path / "p2", init=str(done / "final"),
                            init_state=True, model_config=None))
