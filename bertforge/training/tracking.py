"""What a training run shows and leaves behind: ``metrics.jsonl``, TensorBoard (when
importable), a tqdm progress bar on stderr, and a PNG of the curves at the end."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"


class MetricsLog:
    """Appends one JSON object per line to ``OUT/metrics.jsonl`` (and TensorBoard scalars
    under ``OUT/tensorboard`` when ``torch.utils.tensorboard`` imports). Inactive on
    processes other than the main one (``enabled=False``)."""

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = _tensorboard_writer(Path(out_dir) / "tensorboard") if (
            enabled and tensorboard) else None

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written by a run that died before its next
        checkpoint), so a resumed run's log has each step once."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (a flat dict of numbers, ``step`` included)."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: _jsonable(v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _jsonable(value: Any) -> Any:
    """Numbers as JSON allows them: NaN and inf become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tensorboard_writer(folder: Path) -> Any:
    """A ``SummaryWriter`` on ``folder``; None, with a one-line notice on stderr, when the
    optional ``tensorboard`` package is missing (training goes on without it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("bertforge: TensorBoard logs skipped: the 'tensorboard' package is not "
              "installed (pip install 'bertforge[tensorboard]'); metrics.jsonl has the same "
              "numbers", file=sys.stderr, flush=True)
        return None
    return SummaryWriter(str(folder))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar over optimiser steps on stderr (ETA from tqdm's rate)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr,
                unit="step", dynamic_ncols=True, smoothing=0.1)


def plot_curves(records: list[dict[str, Any]], png: Path) -> Path | None:
    """Training loss, learning rate and held-out accuracy against step, as one PNG.
    Returns None (with a warning) when matplotlib is missing or there is nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("no curves PNG: matplotlib is not installed (pip install matplotlib)",
                      stacklevel=2)
        return None
    train = [r for r in records if "loss" in r]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _lines(axes[0], train, ("loss", "mlm_loss", "nsp_loss"), "training loss (nats)")
    _lines(axes[1], train, ("lr",), "learning rate")
    evals = [r for r in records if "eval_mlm_acc" in r]
    _lines(axes[2], evals, ("eval_mlm_acc", "eval_nsp_acc"), "held-out accuracy")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _lines(ax: Any, records: list[dict[str, Any]], keys: tuple[str, ...], title: str) -> None:
    for key in keys:
        points = [(r["step"], r[key]) for r in records
                  if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points, strict=True), label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
