"""Atomic checkpoints: checksums, corruption detection and fallback, keep-last-K, full disk."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest
import torch
from _helpers import tiny_config

from bertforge.model import BertForPreTraining
from bertforge.training import checkpointing as ck


def _save(out, step, model, **kw):
    return ck.save_checkpoint(out, step, model, {"step": step, "rng": ck.rng_state()}, **kw)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return BertForPreTraining(tiny_config())


def test_round_trip_weights_and_state(tmp_path, model):
    vocab = tmp_path / "v.txt"
    vocab.write_text("[PAD]\n")
    path = _save(tmp_path / "out", 3, model, extra_files={"vocab.txt": vocab})
    assert path.name == "checkpoint-3" and (path / "vocab.txt").is_file()
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "manifest.json", "model.safetensors", "training_state.pt", "vocab.txt"]
    again = BertForPreTraining(tiny_config())
    ck.load_model_weights(again, path)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert ck.load_training_state(path)["step"] == 3


def test_rng_state_restores_every_generator():
    gen = np.random.default_rng(5)
    state = ck.rng_state({"collator": {"bit_generator": gen.bit_generator.state}})
    want = (random.random(), np.random.rand(), torch.rand(1), gen.random())
    extra = ck.set_rng_state(state)
    gen.bit_generator.state = extra["collator"]["bit_generator"]
    assert (random.random(), np.random.rand(), torch.rand(1), gen.random()) == want


def test_corrupt_newest_is_skipped_with_a_warning(tmp_path, model):
    out = tmp_path / "out"
    for step in (1, 2, 3):
        _save(out, step, model)
    blob = out / "checkpoint-3" / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    (out / "checkpoint-2" / "manifest.json").unlink()  # as if killed before the manifest
    with pytest.warns(UserWarning, match="checkpoint-3.*sha256"):
        latest = ck.find_latest(out)
    assert latest == out / "checkpoint-1"
    with pytest.raises(ck.CheckpointCorrupt, match="model.safetensors"):
        ck.load_training_state(out / "checkpoint-3")


def test_keep_last_k_and_stale_temp_dirs(tmp_path, model):
    out = tmp_path / "out"
    (out / ".tmp-checkpoint-9-1").mkdir(parents=True)  # left by a crashed writer
    for step in (10, 20, 30, 40):
        _save(out, step, model, keep_last=2)
    assert [p.name for p in out.iterdir()] and sorted(p.name for p in out.iterdir()) == [
        "checkpoint-30", "checkpoint-40"]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    out = tmp_path / "out"
    _save(out, 1, model)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", no_space)
    with pytest.raises(ck.CheckpointWriteError, match="No space left.*intact"):
        _save(out, 2, model, keep_last=1)
    assert [p.name for p in out.iterdir()] == ["checkpoint-1"]
    ck.verify(out / "checkpoint-1")


def test_overwriting_the_same_step_is_atomic(tmp_path, model):
    out = tmp_path / "out"
    _save(out, 5, model)
    _save(out, 5, model)
    assert [p.name for p in out.iterdir()] == ["checkpoint-5"]
    ck.verify(out / "checkpoint-5")


def test_unsafe_training_state_is_refused(tmp_path, model):
    with pytest.raises(TypeError, match="weights_only"):
        ck.save_checkpoint(tmp_path, 1, model, {"thing": object()})
