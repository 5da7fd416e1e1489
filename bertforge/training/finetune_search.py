"""Several seeds and the paper's grid: fine-tuning BERT on small sets swings by points
between seeds, so report mean ± std over seeds and pick hyper-parameters by the mean.

Layout: ``OUT/seed-S/`` for one configuration; ``OUT/lr2e-05_bs32_ep3/seed-S/`` for a
grid. ``OUT/summary.json`` holds, per configuration, every seed's metrics and the mean,
sample standard deviation, minimum and maximum of each metric, and the best seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.training.finetune import FinetuneArgs, FinetuneTask, finetune

PAPER_GRID: dict[str, list[Any]] = {"lr": [5e-5, 3e-5, 2e-5], "batch_size": [16, 32],
                                    "epochs": [2, 3, 4]}


def aggregate(runs: Sequence[dict[str, Any]], main_metric: str) -> dict[str, Any]:
    """Mean, std (ddof=1; 0 for one run), min, max of every numeric metric, and the best run."""
    keys = [k for k, v in runs[0].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    stats = {}
    for key in keys:
        values = np.asarray([float(r[key]) for r in runs if key in r])
        stats[key] = {"mean": float(values.mean()),
                      "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                      "min": float(values.min()), "max": float(values.max())}
    best = max(runs, key=lambda r: r.get(main_metric, float("-inf")))
    return {"runs": [_strip(r) for r in runs], "stats": stats, "best_seed": best["args"]["seed"],
            "main_metric": main_metric}


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "args"} | {"seed": run["args"]["seed"]}


def run_seeds(make_task: Callable[[], FinetuneTask], args: FinetuneArgs, seeds: Sequence[int],
              out_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One run per seed into ``OUT/seed-S``; returns (and writes) the aggregate."""
    out = Path(out_dir)
    runs = []
    for seed in seeds:
        torch.manual_seed(int(seed))  # a new head's initial weights follow the seed too
        task = make_task()
        run = finetune(task, dataclasses.replace(args, seed=int(seed)), out / f"seed-{seed}")
        log(f"seed {seed}: {task.main_metric} = {run.get(task.main_metric, float('nan')):.4f}")
        runs.append(run)
    summary = aggregate(runs, task.main_metric)
    _write(out / "summary.json", summary)
    m = summary["stats"].get(task.main_metric, {"mean": float("nan"), "std": float("nan")})
    log(f"{task.main_metric}: {m['mean']:.4f} ± {m['std']:.4f} over {len(runs)} seed(s); "
        f"best seed {summary['best_seed']}")
    return summary


def grid_name(point: dict[str, Any]) -> str:
    short = {"lr": "lr", "batch_size": "bs", "epochs": "ep"}
    return "_".join(f"{short.get(k, k)}{v:g}" if isinstance(v, float) else f"{short.get(k, k)}{v}"
                    for k, v in point.items())


def grid_search(make_task: Callable[[], FinetuneTask], args: FinetuneArgs,
                grid: dict[str, list[Any]], seeds: Sequence[int], out_dir: str | Path,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every combination of ``grid`` (default: the paper's), each over ``seeds``; the best
    configuration is the one with the highest mean main metric."""
    out = Path(out_dir)
    results = {}
    names, values = list(grid), [grid[k] for k in grid]
    for combo in itertools.product(*values):
        point = dict(zip(names, combo, strict=True))
        log(f"grid point {point}")
        summary = run_seeds(make_task, dataclasses.replace(args, **point), seeds,
                            out / grid_name(point), log)
        results[grid_name(point)] = {"point": point, **summary}
    main = next(iter(results.values()))["main_metric"]
    best = max(results, key=lambda k: results[k]["stats"].get(main, {"mean": -1e9})["mean"])
    report = {"best": best, "best_point": results[best]["point"], "results": results}
    _write(out / "summary.json", report)
    log(f"best configuration: {best}")
    return report


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
