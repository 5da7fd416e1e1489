"""Kill tests: ``bertforge pretrain`` and ``bertforge finetune classify`` killed with SIGKILL
at random moments (delays from a seeded generator, so mid-step, mid-checkpoint-write and
mid-evaluation all happen), resumed with ``--resume`` each time, end with the same bits as
a run never interrupted (CPU, ``--deterministic``, dropout on).

``tests/training/test_pretrain_resume.py`` kills pre-training once, just after a
checkpoint; these complement it with many kills at arbitrary moments, and fine-tuning."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _helpers import need_data, tiny_config
from safetensors.torch import load_file
from training.test_pretrain_loop import build_corpus, run_config

from bertforge.training import checkpointing as ck
from bertforge.training.pretrain_config import PretrainConfig
from bertforge.training.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0


@pytest.fixture
def deterministic_off_afterwards():
    saved = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.set_num_threads(saved[1])


def _cli_args(cfg: PretrainConfig) -> list[str]:
    """``bertforge pretrain`` flags for ``cfg`` (as ``test_pretrain_resume.py`` builds them)."""
    args = ["--data", cfg.data, "--eval-data", cfg.eval_data, "--tokenizer", cfg.tokenizer,
            "--model-config", cfg.model_config, "--out", cfg.out]
    for name in ("max_steps", "batch_size", "lr", "warmup_steps", "log_every", "eval_every",
                 "eval_batches", "save_every", "keep_last", "threads", "seed"):
        args += [f"--{name.replace('_', '-')}", str(getattr(cfg, name))]
    return args + ["--device", "cpu", "--deterministic", "--quiet", "--no-tensorboard"]


def _newest_step(out: Path) -> int:
    found = ck.list_checkpoints(out)
    return int(found[-1].name.split("-")[1]) if found else -1


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bertforge", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    """Wait for a run to end by itself; fail with its stderr if it did not succeed."""
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run did not finish within the time limit")
    assert proc.returncode == 0, err.decode()[-3000:]


def kill_at_random_moments(argv: list[str], resume_flag: list[str], out: Path, kills: int,
                           rng: random.Random, max_delay: float) -> list[tuple[int, int]]:
    """Run ``bertforge ARGV`` and SIGKILL it ``kills`` times, each time once it has written
    a checkpoint newer than any before (so every life makes progress) plus a random delay
    of up to ``max_delay`` seconds; restart with ``resume_flag`` after each kill. Returns,
    per kill, (newest checkpoint step before the kill, after it)."""
    history = []
    for life in range(kills):
        before = _newest_step(out)
        proc = _start(argv + (resume_flag if life else []))
        deadline = time.monotonic() + TIMEOUT
        while _newest_step(out) <= before:
            if proc.poll() is not None:
                pytest.fail(f"kill {life + 1}: the run ended before it could be killed "
                            f"(make it longer): {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"kill {life + 1}: no new checkpoint within {TIMEOUT} s")
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, max_delay))
        if proc.poll() is not None:
            pytest.fail(f"kill {life + 1}: the run ended before the kill (make it longer)")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        history.append((before, _newest_step(out)))
    return history


def _same_tensors(a: Path, b: Path) -> None:
    mine, theirs = load_file(a), load_file(b)
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), f"{a}: {name} differs from {b}"


# ------------------------------------------------------------------ pre-training
def test_pretrain_killed_five_times_at_random_is_bit_identical(tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path / "corpus")
    settings = dict(max_steps=40, save_every=1, eval_every=10, log_every=2, seed=5,
                    deterministic=True, threads=1, keep_last=2)
    killed = run_config(corpus, tmp_path / "killed", **settings)
    out = tmp_path / "killed"
    reference = _start(["pretrain", *_cli_args(run_config(corpus, tmp_path / "whole",
                                                          **settings))])  # alongside
    history = kill_at_random_moments(["pretrain", *_cli_args(killed)], ["--resume"], out,
                                     kills=5, rng=random.Random(20240), max_delay=0.25)
    assert not (out / "final").exists(), f"the run was not interrupted: {history}"
    _finish(_start(["pretrain", *_cli_args(killed), "--resume"]))
    _finish(reference)

    _same_tensors(out / "final" / "model.safetensors",
                  tmp_path / "whole" / "final" / "model.safetensors")
    a, b = read_metrics(out / "metrics.jsonl"), read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(2, 41, 2))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r.get("eval_mlm_loss") for r in a] == [r.get("eval_mlm_loss") for r in b]
    assert not list(out.glob(".tmp-*")), "a killed writer's temporary directory was left"
    assert [p.name for p in ck.list_checkpoints(out)] == ["checkpoint-39", "checkpoint-40"]


# ------------------------------------------------------------------ fine-tuning
@pytest.fixture(scope="module")
def classify_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """96 real SST-2 sentences as train.csv (64) and dev.csv (32), a WordPiece vocabulary
    learnt from them and a tiny random BERT (dropout 0.1) saved with it."""
    from bertforge.model.task_heads import BertForSequenceClassification
    from bertforge.tokenization import train_wordpiece

    root = tmp_path_factory.mktemp("classify")
    lines = need_data("glue", "SST-2", "train.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.rsplit("\t", 1) for line in lines[1:97]]
    (root / "text.txt").write_text("\n".join(text for text, _ in rows) + "\n")
    for name, part in (("train", rows[:64]), ("dev", rows[64:])):
        with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows([text.strip(), "positive" if label == "1" else "negative"]
                             for text, label in part)
    tok = train_wordpiece([root / "text.txt"], 400, show_progress=False)
    torch.manual_seed(0)
    config = tiny_config(vocab_size=tok.vocab_size, hidden_dropout_prob=0.1,
                         attention_probs_dropout_prob=0.1)
    BertForSequenceClassification(config).bert.save_pretrained(str(root / "model"))
    tok.save(root / "model")
    return {"train": root / "train.csv", "dev": root / "dev.csv", "model": root / "model"}


def _finetune_argv(data: dict[str, Path], out: Path) -> list[str]:
    return ["finetune", "classify", "--train", str(data["train"]), "--dev", str(data["dev"]),
            "--model", str(data["model"]), "--out", str(out), "--epochs", "4",
            "--batch-size", "8", "--lr", "2e-3", "--max-length", "32", "--save-every", "1",
            "--deterministic", "--quiet"]


def test_finetune_killed_at_random_is_bit_identical(tmp_path: Path,
                                                    classify_data: dict[str, Path]) -> None:
    out, whole = tmp_path / "killed", tmp_path / "whole"
    reference = _start(_finetune_argv(classify_data, whole))  # alongside the kills
    history = kill_at_random_moments(_finetune_argv(classify_data, out), ["--resume"], out,
                                     kills=3, rng=random.Random(7), max_delay=0.3)
    assert not (out / "eval_results.json").exists(), f"not interrupted: {history}"
    _finish(_start(_finetune_argv(classify_data, out) + ["--resume"]))
    _finish(reference)

    total = 4 * 64 // 8
    for name in (f"checkpoint-{total}/model.safetensors", "best/model.safetensors"):
        _same_tensors(out / name, whole / name)  # the final weights, and the best epoch's
    mine, theirs = ck.load_training_state(out / f"checkpoint-{total}"), ck.load_training_state(
        whole / f"checkpoint-{total}")
    for key in ("exp_avg", "exp_avg_sq"):  # the optimizer's moments too
        assert all(torch.equal(mine["optimizer"]["state"][i][key], s[key])
                   for i, s in theirs["optimizer"]["state"].items())
    lines = [(d / "metrics.jsonl").read_text().splitlines() for d in (out, whole)]
    assert lines[0] == lines[1] and sum('"eval"' in line for line in lines[0]) == 4
    results = [json.loads((d / "eval_results.json").read_text()) for d in (out, whole)]
    for r in results:
        r.pop("train_seconds")
        r["args"].pop("resume")
    assert results[0] == results[1] and results[0]["steps"] == total
    assert (out / "predictions_dev.jsonl").read_text() == (
        whole / "predictions_dev.jsonl").read_text()


def test_finetune_resume_refuses_other_settings(
        tmp_path: Path, classify_data: dict[str, Path], capsys: pytest.CaptureFixture,
        deterministic_off_afterwards: None) -> None:
    from bertforge.cli.main import main

    out = tmp_path / "run"
    argv = _finetune_argv(classify_data, out)
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 0
    assert [p.name for p in ck.list_checkpoints(out)] == ["checkpoint-7", "checkpoint-8"]
    capsys.readouterr()
    assert main(argv) == 2  # the checkpoints of an earlier run are not silently mixed in
    assert "holds checkpoints of an earlier run; pass --resume" in capsys.readouterr().err
    changed = list(argv)
    changed[changed.index("--lr") + 1] = "1e-3"
    assert main([*changed, "--resume"]) == 2
    assert "checkpoint-8: the run being resumed had other settings: lr (0.002 -> 0.001)" in (
        capsys.readouterr().err)
    assert main([*argv, "--resume"]) == 0  # a finished run resumes to its end at once
    assert "resumed from" in capsys.readouterr().err
