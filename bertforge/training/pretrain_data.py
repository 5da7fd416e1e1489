"""Pre-training batches: a seeded, restorable order over shard instances, and data checks.

``BatchStream`` hands each process its micro-batches of instances for one optimiser
step. The order is a permutation drawn from ``(seed, epoch)``, so a position
``(epoch, cursor)`` is all that a checkpoint needs to continue exactly where it stopped.
Within a global batch of B instances, micro-batch k of process r is the slice
``[(k * W + r) * m, ... + m)`` (W processes, m instances each): one process with B
instances and two with B/2 each see the same instances in every step.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertforge.training.distributed import DistInfo
from bertforge.training.pretrain_config import DATA_OBJECTIVES, PretrainConfig

Instance = dict[str, np.ndarray]


class DataMismatch(ValueError):
    """Shards that do not fit the model, the objective or each other; names the file."""


class Dataset(Protocol):
    meta: dict

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Instance: ...


class BatchStream:
    """Micro-batches of instances for this process, step after step, epoch after epoch.

    ``batch_size`` is global (instances per optimiser step over all processes);
    ``micro`` x ``accum`` x ``info.world_size`` equals it. The last partial batch of an
    epoch is dropped; the next epoch has a new permutation.
    """

    def __init__(self, dataset: Dataset, batch_size: int, micro: int, accum: int,
                 info: DistInfo, seed: int) -> None:
        if len(dataset) < batch_size:
            raise DataMismatch(f"{getattr(dataset, 'path', 'data')}: {len(dataset)} instances "
                               f"is fewer than one batch of {batch_size}; lower --batch-size "
                               "or create more data")
        self.dataset, self.batch_size, self.micro, self.accum = dataset, batch_size, micro, accum
        self.info, self.seed = info, seed
        self.epoch = self.cursor = 0
        self._order: tuple[int, np.ndarray] | None = None

    def order(self) -> np.ndarray:
        """This epoch's permutation of instance indices, int64 [N] (cached)."""
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = (self.epoch, rng.permutation(len(self.dataset)))
        return self._order[1]

    def next_step(self) -> list[list[Instance]]:
        """This process's ``accum`` micro-batches (lists of instances) for the next step."""
        if self.cursor + self.batch_size > len(self.dataset):
            self.epoch, self.cursor = self.epoch + 1, 0
        batch = self.order()[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        w, r, m = self.info.world_size, self.info.rank, self.micro
        return [[self.dataset[int(i)] for i in batch[(k * w + r) * m:(k * w + r + 1) * m]]
                for k in range(self.accum)]

    def state_dict(self) -> dict[str, int]:
        """The position: epoch and instances of its permutation already used."""
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed,
                "batch_size": self.batch_size, "instances": len(self.dataset)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (the data set must be the same size)."""
        if int(state["instances"]) != len(self.dataset):
            raise DataMismatch(f"the checkpoint was trained on {state['instances']} instances "
                               f"but --data has {len(self.dataset)}; resume with the same "
                               "shards (use --init for new data)")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def eval_batches(dataset: Dataset, micro: int, max_batches: int,
                 info: DistInfo) -> list[list[Instance]]:
    """The first ``max_batches`` x W micro-batches of ``dataset`` in file order, this
    process's share (every W-th batch)."""
    n = min(len(dataset), max_batches * micro * info.world_size)
    starts = range(info.rank * micro, n, micro * info.world_size)
    return [[dataset[i] for i in range(s, min(s + micro, n))] for s in starts]


# ------------------------------------------------------------------ collator
def build_collator(meta: dict, cfg: PretrainConfig, tokenizer: Any, seed: int) -> Any:
    """A ``MaskingCollator`` with the data's masking parameters (``cfg`` may override them
    for dynamically masked shards). Without a tokenizer the rule comes from ``meta``."""
    from bertforge.pretraining.collator import MaskingCollator

    params = meta.get("parameters", {})
    prob = _pick(cfg.masked_lm_prob, params.get("masked_lm_prob"), 0.15)
    max_pred = _pick(cfg.max_predictions_per_seq, params.get("max_predictions_per_seq"), 20)
    wwm = bool(_pick(cfg.whole_word_mask, params.get("whole_word_mask"), False))
    if tokenizer is None:
        if wwm and params.get("masking") == "dynamic":
            raise DataMismatch("whole-word masking of dynamic shards needs the vocabulary; "
                               "pass --tokenizer DIR")
        tokenizer = rule_from_meta(meta)
    return MaskingCollator(tokenizer, max_predictions_per_seq=int(max_pred),
                           masked_lm_prob=float(prob), whole_word_mask=wwm,
                           pad_to_multiple_of=cfg.pad_to_multiple_of, seed=seed)


def _pick(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def rule_from_meta(meta: dict) -> Any:
    """A ``MaskingRule`` from the special-token ids recorded in a shard's ``meta.json``."""
    from bertforge.pretraining.masking import MaskingRule

    tok = meta["tokenizer"]
    pad = int(tok.get("pad_id", 0))
    kwargs = {"vocab_size": int(tok["vocab_size"]), "mask_id": int(tok["mask_id"]),
              "never_mask": (int(tok["cls_id"]), int(tok["sep_id"]), pad)}
    if "pad_id" in {f.name for f in dataclasses.fields(MaskingRule)}:
        kwargs["pad_id"] = pad
    return MaskingRule(**kwargs)


# ------------------------------------------------------------------ checks
def check_data(train: Dataset, eval_data: Dataset | None, cfg: PretrainConfig,
               vocab_size: int, max_positions: int, fingerprint: str | None) -> None:
    """Shards against the model and each other: tokenizer fingerprint, vocabulary size,
    sequence length, objective. Raises ``DataMismatch`` naming the shard's meta.json."""
    for ds in (d for d in (train, eval_data) if d is not None):
        where = Path(getattr(ds, "path", "data")) / "meta.json"
        tok, params = ds.meta["tokenizer"], ds.meta.get("parameters", {})
        if fingerprint and tok.get("fingerprint") != fingerprint:
            raise DataMismatch(f"{where}: built with tokenizer {tok.get('source')} "
                               "(fingerprint differs from the model's tokenizer); rebuild "
                               "the shards with the model's vocabulary")
        if int(tok["vocab_size"]) > vocab_size:
            raise DataMismatch(f"{where}: vocabulary of {tok['vocab_size']} tokens but the "
                               f"model's vocab_size is {vocab_size}")
        if int(params.get("max_seq_length", 0)) > max_positions:
            raise DataMismatch(f"{where}: max_seq_length {params['max_seq_length']} exceeds "
                               f"the model's max_position_embeddings {max_positions}")
        if params.get("pack") and cfg.objective != "mlm":
            raise DataMismatch(f"{where}: packed shards (several segments per row) train "
                               f"--objective mlm only, not {cfg.objective}")
        data_objective = params.get("objective", "nsp")
        if data_objective not in DATA_OBJECTIVES[cfg.objective]:
            raise DataMismatch(f"{where}: shards built with --objective {data_objective} "
                               f"cannot train objective {cfg.objective}; rebuild with "
                               f"--objective {DATA_OBJECTIVES[cfg.objective][0]}")
    if eval_data is not None and (eval_data.meta["tokenizer"].get("fingerprint")
                                  != train.meta["tokenizer"].get("fingerprint")):
        raise DataMismatch(f"{cfg.eval_data}: built with another tokenizer than {cfg.data}")


def open_shards(path: str | os.PathLike) -> Dataset:
    """``ShardDataset(path)`` (the one import of the data package's reader)."""
    from bertforge.pretraining.shards import ShardDataset

    return ShardDataset(path)
