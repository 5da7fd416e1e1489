"""Pre-training data: documents -> NSP/SOP pairs -> 80/10/10 masks -> memory-mapped shards.

``create_pretraining_data`` builds a shard directory (``bertforge data create``);
``ShardDataset`` reads it in O(1) per instance; ``MaskingCollator`` pads instances into
torch batches and draws dynamic masks (it is the only torch import here, made lazily).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from bertforge.pretraining.create import CreateConfig, create_pretraining_data
from bertforge.pretraining.encoder import CachedEncoder
from bertforge.pretraining.instances import PairRule
from bertforge.pretraining.masking import MaskDraw, MaskingRule, draw_masks, num_to_mask
from bertforge.pretraining.reader import split_sentences
from bertforge.pretraining.shards import ShardDataset

__all__ = ["CachedEncoder", "CreateConfig", "MaskDraw", "MaskingCollator", "MaskingRule",
           "PairRule", "ShardDataset", "create_pretraining_data", "draw_masks", "num_to_mask",
           "split_sentences"]


def __getattr__(name: str) -> Any:
    if name == "MaskingCollator":  # imports torch; only when asked for
        return import_module("bertforge.pretraining.collator").MaskingCollator
    raise AttributeError(f"module 'bertforge.pretraining' has no attribute {name!r}")
