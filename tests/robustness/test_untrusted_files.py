"""Untrusted weight files: nothing is unpickled unless asked. A legacy ``pytorch_model.bin``
holding more than tensors (here the training arguments, as old BERT scripts saved them) is
refused by default, naming the file and the option; ``allow_pickle=True`` /
``bertforge convert --allow-pickle`` loads it with a warning (still weights-only, with the
script's data classes allowed), and the result is safetensors. No load ever runs a file's
code: a pickled module or a code-running object is refused even with ``allow_pickle``."""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from _helpers import tiny_config
from safetensors.torch import load_file

from bertforge.cli.main import main
from bertforge.interop.checkpoint import CheckpointError, UnsafeLoadWarning, read_checkpoint
from bertforge.model import BertForPreTraining


class Marker:
    """Unpickling this creates a file: shows whether a load ran the pickle's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A model saved as safetensors, and the same weights as a legacy pickled
    ``pytorch_model.bin`` in ``legacy/`` (state_dict + argparse.Namespace)."""
    torch.manual_seed(0)
    BertForPreTraining(tiny_config()).save_pretrained(str(tmp_path / "safe"))
    folder = tmp_path / "legacy"
    folder.mkdir()
    shutil.copy(tmp_path / "safe" / "config.json", folder / "config.json")
    weights = load_file(tmp_path / "safe" / "model.safetensors")
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=1e-4, do_lower_case=True)},
               folder / "pytorch_model.bin")
    return folder


def test_legacy_pickle_refused_by_default_loaded_when_allowed(legacy: Path) -> None:
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*weights-only.*--allow-pickle"):
        read_checkpoint(legacy)
    with pytest.warns(UnsafeLoadWarning, match=r"pytorch_model\.bin.*weights-only.*no code"):
        unpickled = read_checkpoint(legacy, allow_pickle=True)
    safe = read_checkpoint(legacy.parent / "safe")
    assert unpickled.state.keys() == safe.state.keys() and not unpickled.unexpected
    for name, tensor in safe.state.items():
        assert torch.equal(unpickled.state[name], tensor), name


def test_allow_pickle_warns_only_when_it_unpickles(legacy: Path) -> None:
    weights = load_file(legacy.parent / "safe" / "model.safetensors")
    torch.save(weights, legacy / "pytorch_model.bin")  # tensors only: weights-only loads it
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeLoadWarning)
        read_checkpoint(legacy, allow_pickle=True)


def test_default_load_never_runs_the_pickle(legacy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"x": Marker(marker)}, legacy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_checkpoint(legacy)
    assert not marker.exists()


def test_convert_allow_pickle_flag(legacy: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "converted"
    assert main(["convert", "--from", str(legacy), "--to", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-pickle" in err and str(legacy) in err
    assert not out.exists()
    assert main(["convert", "--from", str(legacy), "--to", str(out), "--allow-pickle"]) == 0
    err = capsys.readouterr().err
    assert "bertforge convert: warning:" in err and "no code from the file runs" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    converted, safe = read_checkpoint(out), read_checkpoint(legacy.parent / "safe")
    for name, tensor in safe.state.items():
        assert torch.equal(converted.state[name], tensor), name


def test_allow_pickle_never_runs_the_pickle_either(legacy: Path, tmp_path: Path) -> None:
    """With allow_pickle a file whose pickle would run code, or that holds a whole pickled
    module, is refused, naming what it holds; the code does not run."""
    marker = tmp_path / "code-ran"
    weights = load_file(legacy.parent / "safe" / "model.safetensors")
    torch.save({"state_dict": weights, "x": Marker(marker)}, legacy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"even with --allow-pickle.*pathlib"):
        read_checkpoint(legacy, allow_pickle=True)
    assert not marker.exists()
    torch.save(BertForPreTraining(tiny_config()), legacy / "pytorch_model.bin")
    held = (r"even with --allow-pickle \(it holds bertforge\."
            r".*bertforge\.model\.bert\.BertModel.* more\)")
    with pytest.raises(CheckpointError, match=held):
        read_checkpoint(legacy, allow_pickle=True)


def test_allow_pickle_reads_numpy_scalars(legacy: Path) -> None:
    """Old scripts saved their best score as a numpy scalar beside the weights."""
    import numpy as np

    weights = load_file(legacy.parent / "safe" / "model.safetensors")
    torch.save({"state_dict": weights, "best": np.float64(0.91), "step": np.int64(7),
                "args": argparse.Namespace(lr=2e-5)}, legacy / "pytorch_model.bin")
    with pytest.warns(UnsafeLoadWarning):
        ckpt = read_checkpoint(legacy, allow_pickle=True)
    assert torch.equal(ckpt.state["bert.embeddings.word_embeddings.weight"],
                       weights["bert.embeddings.word_embeddings.weight"])
