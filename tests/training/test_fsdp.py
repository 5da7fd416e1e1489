"""FSDP2 (``--fsdp``) under torchrun on the CPU, gloo, 2 processes: 2 x B/2 gives the
update of 1 x B, checkpoints hold the full model and optimiser state, a resumed FSDP run
ends with the bits of one never interrupted, and FSDP checkpoints resume unsharded too."""

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

from bertforge.training.pretrain import pretrain
from bertforge.training.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[2]
# eval_batches covers the whole held-out set, which then splits unevenly (see below)
STEPS = dict(max_steps=4, batch_size=8, lr=1e-3, warmup_steps=0, log_every=1, save_every=2,
             eval_every=2, eval_batches=1000)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Static masks and no dropout: the only randomness left is the data order."""
    root = tmp_path_factory.mktemp("corpus_fsdp")
    corpus = build_corpus(root, masking="static")
    model = json.loads(corpus["model"].read_text())
    model.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (root / "model_nodrop.json").write_text(json.dumps(model))
    return {**corpus, "model": root / "model_nodrop.json"}


def torchrun_fsdp(corpus: dict[str, Path], out: Path, *extra: str) -> None:
    """``torchrun --nproc_per_node 2 -m bertforge pretrain --fsdp`` (gloo on the CPU)."""
    args = ["--data", str(corpus["train"]), "--eval-data", str(corpus["eval"]),
            "--tokenizer", str(corpus["tok"]), "--model-config", str(corpus["model"]),
            "--out", str(out), "--threads", "1", "--device", "cpu", "--quiet",
            "--no-tensorboard", "--fsdp", *extra]
    for name, value in STEPS.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "bertforge", "pretrain", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def fsdp_run(corpus, tmp_path_factory) -> Path:
    """Four FSDP steps, checkpoints at 2 and 4, evaluation at 2 and 4."""
    out = tmp_path_factory.mktemp("fsdp") / "two"
    torchrun_fsdp(corpus, out)
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_two_sharded_processes_with_half_batches_equal_one_process(corpus, fsdp_run, tmp_path):
    from bertforge.training.pretrain_data import open_shards

    # 4-instance micro-batches dealt to 2 processes in turn: with n % 8 in 1..4 the second
    # process has one batch fewer and must repeat one uncounted (FSDP's forward is
    # collective), so the evaluation below checks that path too
    assert 1 <= len(open_shards(corpus["eval"])) % 8 <= 4, "held-out set no longer uneven"
    pretrain(run_config(corpus, tmp_path / "one", **STEPS))
    one, two = weights(tmp_path / "one" / "final"), weights(fsdp_run / "final")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    a = read_metrics(tmp_path / "one" / "metrics.jsonl")
    b = read_metrics(fsdp_run / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for key in ("loss", "mlm_loss", "nsp_loss", "grad_norm", "tokens"):
        assert [r[key] for r in b] == pytest.approx([r[key] for r in a], rel=1e-6), key
    # evaluation (each process its share of the same held-out set) agrees too
    for key in ("eval_mlm_loss", "eval_mlm_acc", "eval_nsp_acc"):
        assert [r[key] for r in b if key in r] == pytest.approx(
            [r[key] for r in a if key in r], rel=1e-6), key


def test_fsdp_checkpoints_are_full_and_load_anywhere(fsdp_run):
    from bertforge.model import BertForPreTraining
    from bertforge.training.checkpointing import load_training_state

    state = load_training_state(fsdp_run / "checkpoint-2")
    assert state["world_size"] == 2 and state["progress"]["step"] == 2
    moments = state["optimizer"]["state"]["bert.embeddings.word_embeddings.weight"]
    model = BertForPreTraining.from_pretrained(str(fsdp_run / "checkpoint-2"), strict=True)
    # full (unsharded) tensors: the moments have the shape of the whole parameter
    assert moments["exp_avg"].shape == model.bert.embeddings.word_embeddings.weight.shape
    assert int(moments["step"]) == 2
    final = BertForPreTraining.from_pretrained(str(fsdp_run / "final"), strict=True)
    config = json.loads((fsdp_run / "final" / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]  # not FSDP's wrapper class
    assert (fsdp_run / "final" / "vocab.txt").is_file()
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertForPreTraining.from_pretrained(fsdp_run / "final")
    torch.testing.assert_close(theirs.bert.embeddings.word_embeddings.weight,
                               final.bert.embeddings.word_embeddings.weight)


def test_resumed_fsdp_run_ends_with_the_same_bits(corpus, fsdp_run, tmp_path):
    """Sharded again from checkpoint-2: weights, optimiser, schedule, data position."""
    torchrun_fsdp(corpus, tmp_path / "resumed", "--resume", str(fsdp_run / "checkpoint-2"))
    resumed, whole = weights(tmp_path / "resumed" / "final"), weights(fsdp_run / "final")
    for name, tensor in whole.items():
        assert torch.equal(resumed[name], tensor), name
    a = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    b = read_metrics(fsdp_run / "metrics.jsonl")
    assert [r["step"] for r in a] == [3, 4]
    assert [r["loss"] for r in a] == [r["loss"] for r in b[2:]]


def test_fsdp_checkpoint_resumes_in_one_unsharded_process(corpus, fsdp_run, tmp_path):
    """The optimiser state keyed by parameter name loads into a plain optimiser: the
    global batch is the same, so the result is the same up to rounding."""
    pretrain(run_config(corpus, tmp_path / "plain", resume=str(fsdp_run / "checkpoint-2"),
                        **STEPS))
    plain, whole = weights(tmp_path / "plain" / "final"), weights(fsdp_run / "final")
    for name, tensor in whole.items():
        torch.testing.assert_close(plain[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
