"""Exact resume: a run killed with SIGKILL after a checkpoint and resumed ends with the
same bits as a run never interrupted (CPU, --deterministic), with dropout and dynamic
masking on, so the data position and every generator must come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain_loop import build_corpus, run_config

from bertforge.training.pretrain import pretrain
from bertforge.training.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def deterministic_off_afterwards():
    saved = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.set_num_threads(saved[1])


def _cli_args(cfg) -> list[str]:
    args = ["--data", cfg.data, "--eval-data", cfg.eval_data, "--tokenizer", cfg.tokenizer,
            "--model-config", cfg.model_config, "--out", cfg.out]
    for name in ("max_steps", "batch_size", "lr", "warmup_steps", "log_every", "eval_every",
                 "eval_batches", "save_every", "threads", "seed"):
        args += [f"--{name.replace('_', '-')}", str(getattr(cfg, name))]
    return args + ["--device", "cpu", "--deterministic", "--quiet", "--no-tensorboard"]


def _kill_after_checkpoint(cfg, step: int, timeout: float = 120.0) -> None:
    """Start the CLI in a subprocess; SIGKILL it as soon as checkpoint-``step`` exists."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bertforge", "pretrain", *_cli_args(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    target = Path(cfg.out) / f"checkpoint-{step}"
    deadline = time.monotonic() + timeout
    while not target.is_dir():
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within the time limit")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_and_resume_is_bit_identical(tmp_path, deterministic_off_afterwards):
    corpus = build_corpus(tmp_path / "corpus")
    settings = dict(max_steps=24, save_every=4, eval_every=8, log_every=2, seed=11,
                    deterministic=True, threads=1)
    killed = run_config(corpus, tmp_path / "killed", **settings)
    _kill_after_checkpoint(killed, 4)
    assert not (tmp_path / "killed" / "final").exists(), "the run was not interrupted"
    pretrain(run_config(corpus, tmp_path / "killed", resume="latest", **settings))
    pretrain(run_config(corpus, tmp_path / "whole", **settings))

    resumed = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    whole = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    assert resumed.keys() == whole.keys()
    for name, tensor in whole.items():
        assert torch.equal(resumed[name], tensor), name
    # the log of the resumed run has every step once, and the same numbers
    a = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    b = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
