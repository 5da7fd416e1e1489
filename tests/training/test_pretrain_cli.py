"""``bertforge pretrain`` from YAML and flags, the ready configs, the other objectives,
mixed precision on the CPU, and DDP (gloo, 2 processes): 2 x B/2 updates as 1 x B."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain_loop import build_corpus, run_config

from bertforge.cli.main import build_parser, main
from bertforge.training.pretrain import pretrain
from bertforge.training.pretrain_config import PretrainConfig
from bertforge.training.pretrain_objectives import next_token_labels, unmask
from bertforge.training.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bertforge" / "configs"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("corpus_cli"), masking="static")


def test_yaml_config_and_flags(corpus, tmp_path, capsys):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"data: {corpus['train']}\nmodel_config: {corpus['model']}\n"
                         "max_steps: 50\nbatch_size: 8\nwarmup_steps: 1\nlr: 1.0e-3\n"
                         "log_every: 1\nthreads: 1\ntensorboard: false\n")
    code = main(["pretrain", "--config", str(yaml_file), "--max-steps", "2", "--out",
                 str(tmp_path / "run"), "--quiet"])
    assert code == 0 and "trained 2 steps" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    yaml_file.write_text("max_stesp: 3\n")
    assert main(["pretrain", "--config", str(yaml_file)]) == 2
    assert "unknown option(s) max_stesp" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "x"), "--preset", "tiny"]) == 2
    assert "--data" in capsys.readouterr().err


def test_decay_by_time_reaches_zero_when_the_time_is_up(corpus, tmp_path, capsys):
    """--max-time with --decay-by-time: the learning rate falls with the clock (the step
    schedule, 10^6 steps long, would barely have moved) and is ~0 at the last step."""
    out = tmp_path / "timed"
    code = main(["pretrain", "--data", str(corpus["train"]), "--model-config",
                 str(corpus["model"]), "--out", str(out), "--max-steps", "1000000",
                 "--max-time", "0.05", "--decay-by-time", "--batch-size", "4", "--lr", "1e-3",
                 "--warmup-steps", "0", "--log-every", "1", "--threads", "1",
                 "--save-every", "1000000000", "--no-tensorboard", "--quiet"])
    assert code == 0
    lrs = [r["lr"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(lrs) > 5
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))  # never rises
    assert lrs[-1] < 0.2e-3 < 0.6e-3 < lrs[0]
    assert main(["pretrain", "--data", str(corpus["train"]), "--model-config",
                 str(corpus["model"]), "--out", str(tmp_path / "x"), "--decay-by-time"]) == 2
    assert "decay_by_time needs max_time" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cpu_tiny", "paper_phase1", "paper_phase2"])
def test_ready_configs_parse_and_check(name, tmp_path):
    from bertforge.cli.main import apply_yaml

    parser = build_parser()
    argv = ["pretrain", "--config", name, "--data", "D", "--out", "O", "--init", "I"]
    args = apply_yaml(parser, parser.parse_args(argv), argv)
    assert Path(args.config) == CONFIGS / f"{name}.yaml"
    cfg = PretrainConfig(**{k: getattr(args, k) for k in PretrainConfig.field_names()})
    cfg.check()
    if name.startswith("paper"):
        assert (cfg.batch_size, cfg.lr, cfg.warmup_steps, cfg.weight_decay) == (
            256, 1e-4, 10000, 0.01)
        assert cfg.schedule_steps == 1_000_000


def test_ltr_targets_are_the_next_unmasked_token():
    batch = {"input_ids": torch.tensor([[2, 4, 9, 5, 3, 0]]),
             "masked_positions": torch.tensor([[2, 0]]),
             "masked_labels": torch.tensor([[7, -100]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]])}
    ids = unmask(batch)
    assert ids.tolist() == [[2, 4, 7, 5, 3, 0]]
    assert next_token_labels(ids, batch["attention_mask"]).tolist() == [[4, 7, 5, 3, -100,
                                                                          -100]]


@pytest.mark.parametrize("objective, precision", [("mlm", "bf16"), ("ltr", "fp32"),
                                                  ("mlm_nsp", "fp16")])
def test_other_objectives_and_precisions(corpus, tmp_path, objective, precision):
    cfg = run_config(corpus, tmp_path / "run", objective=objective, precision=precision,
                     max_steps=3, log_every=1, eval_every=3, save_every=3)
    result = pretrain(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert result.step == 3 and all(r["loss"] == r["loss"] for r in records)
    assert (records[-1]["nsp_loss"] is None) == (objective != "mlm_nsp")
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved.get("is_causal", False) == (objective == "ltr")


def test_fp16_overflow_is_skipped_by_the_loss_scaler(corpus, tmp_path, monkeypatch):
    """A real fp16 overflow: with the loss scaler starting at 2^32 the backward pass
    overflows fp16 until the scale has halved enough. Those steps are skipped and counted
    (not taken for a diverging run: no abort), the schedule does not move on them, and
    training then goes on with finite weights."""
    import bertforge.training.pretrain as pretrain_module

    make_scaler = pretrain_module._grad_scaler

    def huge_scale(device, enabled, sharded):  # noqa: ANN001, ANN202
        scaler = make_scaler(device, enabled, sharded)
        scaler._init_scale = 2.0 ** 32  # read when the scale is first created
        return scaler

    monkeypatch.setattr(pretrain_module, "_grad_scaler", huge_scale)
    cfg = run_config(corpus, tmp_path / "run", precision="fp16", max_steps=3, log_every=1,
                     eval_every=1000, save_every=1000, lr=1e-3, warmup_steps=2)
    result = pretrain(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert result.step == 3 and 8 <= result.skipped <= 30  # 2^32 halved to below ~2^20
    assert [r["lr"] for r in records] == pytest.approx([0.0, 5e-4, 1e-3])  # warm-up as if
    assert all(r["loss"] == r["loss"] and r["grad_norm"] < 100 for r in records)
    weights = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_two_processes_with_half_batches_equal_one_process(corpus, tmp_path):
    """torchrun, gloo: 2 x B/2 gives the update of 1 x B (static masks, no dropout)."""
    model = json.loads(corpus["model"].read_text())
    model.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "model.json").write_text(json.dumps(model))
    args = ["--data", str(corpus["train"]), "--model-config", str(tmp_path / "model.json"),
            "--max-steps", "3", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "0",
            "--log-every", "1", "--threads", "1", "--device", "cpu", "--quiet",
            "--no-tensorboard"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", "-m", "bertforge", "pretrain", *args, "--out",
                    str(tmp_path / "two")], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    one = run_config(corpus, tmp_path / "one", model_config=str(tmp_path / "model.json"),
                     eval_data=None, tokenizer=None, max_steps=3, batch_size=8, lr=1e-3,
                     warmup_steps=0, log_every=1)
    pretrain(one)
    a = load_file(tmp_path / "one" / "final" / "model.safetensors")
    b = load_file(tmp_path / "two" / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    la = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    lb = [r["loss"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl")]
    assert la == pytest.approx(lb, rel=1e-6)
