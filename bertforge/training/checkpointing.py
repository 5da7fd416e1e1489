"""Training checkpoints: atomic directories with checksums, keep-last-K, find-newest-valid.

A checkpoint is ``OUT/checkpoint-STEP/``::

    config.json, model.safetensors   the model, Hugging Face-shaped (loads in transformers)
    training_state.pt                optimiser, scheduler, scaler, step, data position, RNGs
    (any extra files, e.g. vocab.txt)
    manifest.json                    sha256 and size of every file above; written last

It is written into ``OUT/.tmp-checkpoint-STEP-PID/``, every file fsync'ed, then renamed
into place, so a crash (or a full disk) never leaves a half-written ``checkpoint-STEP``
and the previous checkpoints stay intact. ``training_state.pt`` holds only tensors and
plain containers and is read with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PREFIX = "checkpoint-"
MANIFEST = "manifest.json"
STATE_FILE = "training_state.pt"
FORMAT_VERSION = 1
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


class CheckpointCorrupt(ValueError):
    """A checkpoint directory fails its manifest (missing file, size or sha256 mismatch)."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (e.g. disk full); earlier checkpoints are untouched."""


# ------------------------------------------------------------------ RNG state
def rng_state(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every global random generator's state as weights_only-loadable values: python's
    ``random``, numpy's legacy global generator, torch CPU and (if present) CUDA; plus
    ``extra`` (e.g. a collator's ``state_dict()``), stored as given."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if extra:
        state["extra"] = extra
    return state


def set_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """Restore what ``rng_state`` saved; returns its ``extra`` dict ({} if none)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, int(npy["pos"]), int(npy["has_gauss"]),
                         float(npy["gauss"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return state.get("extra", {})


# ------------------------------------------------------------------ writing
def checkpoint_dir(out_dir: str | os.PathLike, step: int) -> Path:
    """``OUT/checkpoint-STEP`` (not necessarily existing)."""
    return Path(out_dir) / f"{PREFIX}{int(step)}"


def save_checkpoint(out_dir: str | os.PathLike, step: int, model: nn.Module,
                    training_state: dict[str, Any],
                    extra_files: dict[str, str | os.PathLike] | None = None,
                    keep_last: int | None = None) -> Path:
    """Write ``OUT/checkpoint-STEP`` atomically and return its path.

    ``training_state``: tensors and plain containers only (checked by reloading it with
    ``weights_only=True`` before the rename). ``extra_files``: name in the checkpoint ->
    source file to copy (e.g. ``{"vocab.txt": ...}``). ``keep_last``: afterwards delete
    all but the newest K checkpoints. Raises ``CheckpointWriteError`` (with the previous
    checkpoints untouched) if anything fails while writing.
    """
    final = checkpoint_dir(out_dir, step)
    tmp = Path(out_dir) / f".tmp-{final.name}-{os.getpid()}"
    try:
        _write_contents(tmp, model, training_state, extra_files or {})
        _publish(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(
            f"{final}: could not write the checkpoint ({err.strerror or err}); earlier "
            "checkpoints are intact. Free disk space or choose another --out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(out_dir, keep_last or 0)
    return final


def _write_contents(tmp: Path, model: nn.Module, training_state: dict[str, Any],
                    extra_files: dict[str, str | os.PathLike]) -> None:
    from bertforge.interop.checkpoint import save_pretrained  # model weights: safetensors

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_pretrained(_unwrap(model), tmp)
    state = {"format_version": FORMAT_VERSION, **training_state}
    torch.save(state, tmp / STATE_FILE)
    _check_weights_only(tmp / STATE_FILE)  # a resume must never need pickle
    for name, source in extra_files.items():
        shutil.copyfile(source, tmp / name)
    write_manifest(tmp)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _check_weights_only(path: Path) -> None:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a bug in the caller: something not weights_only-safe
        raise TypeError(f"{path}: training state is not loadable with weights_only=True "
                        f"({err}); store tensors and plain containers only") from None


def write_manifest(folder: Path) -> None:
    """fsync every file of ``folder`` and write ``manifest.json`` with their sha256."""
    files = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        files[path.name] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    manifest = folder / MANIFEST
    manifest.write_text(json.dumps({"format_version": FORMAT_VERSION, "files": files},
                                   indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _fsync(manifest)
    _fsync(folder)


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, then removed."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prune(out_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and stale temp dirs; returns
    what was deleted."""
    gone = list_checkpoints(out_dir)[:-keep_last] if keep_last > 0 else []
    gone += [p for p in Path(out_dir).glob(".tmp-" + PREFIX + "*")
             if not p.name.endswith(f"-{os.getpid()}")]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


# ------------------------------------------------------------------ reading
def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-STEP`` directories of ``out_dir``, oldest (lowest step) first."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def verify(folder: str | os.PathLike) -> None:
    """Check every file against ``manifest.json``; raise ``CheckpointCorrupt`` naming
    the first file that is missing or differs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointCorrupt(f"{folder}: no such checkpoint directory; pass an "
                                f"existing {PREFIX}STEP directory, or --resume alone for "
                                "the newest valid one in --out")
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointCorrupt(f"{manifest}: missing or unreadable ({err}); the checkpoint "
                                "was not completely written") from None
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointCorrupt(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != want["bytes"] or sha256(path) != want["sha256"]:
            raise CheckpointCorrupt(f"{path}: size or sha256 differs from {MANIFEST}; the "
                                    "file is corrupt")


def find_latest(out_dir: str | os.PathLike,
                warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest checkpoint of ``out_dir`` that passes ``verify``, or None. Corrupt ones
    are skipped with a warning (``warn``, default ``warnings.warn``)."""
    for path in reversed(list_checkpoints(out_dir)):
        try:
            verify(path)
            return path
        except CheckpointCorrupt as err:
            (warn or _warn)(f"skipping corrupt checkpoint: {err}")
    return None


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def load_training_state(folder: str | os.PathLike, verified: bool = False) -> dict[str, Any]:
    """``training_state.pt`` of a checkpoint (verified against the manifest unless
    ``verified``), loaded with ``weights_only=True`` onto the CPU."""
    folder = Path(folder)
    path = folder / STATE_FILE
    # a model directory (e.g. OUT/final) is no checkpoint whose write was cut short
    if not verified and (path.is_file() or (folder / MANIFEST).is_file()):
        verify(folder)
    if not path.is_file():
        if not folder.is_dir():
            verify(folder)  # names the missing directory
        raise CheckpointCorrupt(f"{path}: not found; {folder} holds model weights only, "
                                "not a resumable training checkpoint (--init without "
                                "--init-state starts from its weights)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointCorrupt(f"{path}: format_version {state.get('format_version')} is "
                                f"not {FORMAT_VERSION}; it was written by another version")
    return state


def load_model_weights(model: nn.Module, folder: str | os.PathLike) -> None:
    """Copy a checkpoint's ``model.safetensors`` into ``model`` (every tensor required;
    shapes must match, else a ``CheckpointError`` names the tensor)."""
    from bertforge.interop.checkpoint import load_state, read_checkpoint

    load_state(_unwrap(model), read_checkpoint(folder), strict=True)
