"""ONNX export of the encoder and of task models, with dynamic batch and sequence axes,
and a check under onnxruntime that the graph computes what PyTorch computes.

The graph takes ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 [B, S]) and
returns ``last_hidden_state`` [B, S, H] and ``pooler_output`` [B, H] for an encoder, or
``logits`` for sequence ([B, K]) and token ([B, S, K]) classification, ``start_logits`` and
``end_logits`` [B, S] for question answering.

The encoder's own forward skips the padding mask when nothing is padded, a decision that
depends on the data and so cannot be exported; export runs the same layers through
:class:`MaskedEncoder`, which always applies the mask.

Needs the ``onnx`` extra: onnx, onnxscript (torch's exporter) and onnxruntime (the check).
Legend: B = batch, S = sequence length, H = hidden size, K = labels.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertforge.inference.common import InferenceError
from bertforge.interop.checkpoint import read_checkpoint
from bertforge.model import BertModel
from bertforge.model.bert import BertOutput, gather_positions

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
TASK_OUTPUTS = {
    "BertForSequenceClassification": ("logits",),
    "BertForTokenClassification": ("logits",),
    "BertForQuestionAnswering": ("start_logits", "end_logits"),
}


class MaskedEncoder(nn.Module):
    """A BertModel's layers run with the padding mask always applied (traceable); the last
    layer's output is zero at padded positions, as BertModel's own (unpadded) forward is."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False,
                output_positions: torch.Tensor | None = None) -> BertOutput:
        """As ``BertModel.forward``. With ``output_positions`` [B, P] (and no per-layer
        outputs) the last layer computes only those rows and [CLS], as BertModel does: an
        exported [CLS] classifier's graph runs its last layer on one row per sequence."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.bool()[:, None, None, :]  # [B, S] -> [B, 1, 1, S]
        x = self.bert.embeddings(input_ids, token_type_ids)
        prune = output_positions is not None and not output_hidden_states and len(
            self.bert.layers) > 0
        hidden = [x]
        for layer in self.bert.layers[:-1] if prune else self.bert.layers:
            x, _ = layer(x, mask)
            hidden.append(x)
        if prune:
            assert output_positions is not None
            x, pooled = self.bert.last_layer_at(x, mask, output_positions)
            return BertOutput(x, pooled, None)
        x = x * attention_mask[..., None].to(x.dtype)  # zeros at padding, as BertModel gives
        pooled = self.bert.pooler(x) if self.bert.pooler is not None else None
        if output_positions is not None:
            x = gather_positions(x, output_positions)  # [B, S, H] -> [B, P, H]
        return BertOutput(x, pooled, tuple(hidden) if output_hidden_states else None)


class ExportWrapper(nn.Module):
    """Positional tensors in, a tuple of tensors out, as the exporter wants."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return tuple(getattr(out, name) for name in self.outputs)


@dataclass
class ExportReport:
    """What was exported and how far onnxruntime's outputs are from PyTorch's."""

    path: Path
    architecture: str
    outputs: tuple[str, ...]
    max_abs_diff: float | None = None  # over all outputs and test shapes; None = not checked


def load_for_export(path: str | os.PathLike) -> tuple[nn.Module, str, tuple[str, ...]]:
    """(model in eval mode, architecture, output names) for a checkpoint directory: a task
    model when config.json names one bertforge has, else the encoder."""
    ckpt = read_checkpoint(path)
    arch = next(iter(ckpt.config.extra.get("architectures") or []), "BertModel")
    has_head = any(k.startswith("head.") for k in ckpt.state)
    if arch in TASK_OUTPUTS and has_head:
        from bertforge.model import task_heads

        model = getattr(task_heads, arch).from_pretrained(str(path), strict=True)
        return model.eval(), arch, TASK_OUTPUTS[arch]
    from bertforge.inference.embed import load_encoder

    model = load_encoder(path)
    outputs = ("last_hidden_state", "pooler_output") if model.pooler is not None else (
        "last_hidden_state",)
    return model, "BertModel", outputs


@contextlib.contextmanager
def traceable(model: nn.Module) -> Iterator[nn.Module]:
    """The model with its encoder swapped for :class:`MaskedEncoder` for the duration."""
    if isinstance(model, BertModel):
        yield MaskedEncoder(model)
        return
    original = model.bert
    model.bert = MaskedEncoder(original)
    try:
        yield model
    finally:
        model.bert = original


def example_inputs(vocab_size: int, batch: int = 2, seq: int = 8,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, token_type_ids) [B, S]; the last row is padded (when
    B > 1; a row is never all padding, whose output no one defines)."""
    gen = generator or torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (batch, seq), generator=gen)
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[-1, max(1, seq // 2):] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = 1
    return ids, mask, types


def export_onnx(model_dir: str | os.PathLike, out: str | os.PathLike, opset: int = 18,
                verify: bool = True, atol: float = 1e-4) -> ExportReport:
    """Export ``model_dir`` to the ONNX file ``out``; with ``verify``, run it under
    onnxruntime on several shapes and raise InferenceError if any output differs from
    PyTorch's by more than ``atol``."""
    _require("onnxscript", "torch's ONNX exporter")
    out = Path(out)
    if out.suffix != ".onnx":
        raise InferenceError(f"--out {out}: an ONNX file name must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, arch, outputs = load_for_export(model_dir)
    config = model.config
    with traceable(model) as traced:
        wrapper = ExportWrapper(traced, outputs).eval()
        _export(wrapper, out, outputs, config.vocab_size, config.max_position_embeddings, opset)
    report = ExportReport(out, arch, outputs)
    if verify:
        report.max_abs_diff = verify_onnx(out, model, outputs, config.vocab_size, atol)
    return report


def _export(wrapper: nn.Module, out: Path, outputs: tuple[str, ...], vocab_size: int,
            max_positions: int, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=max_positions)
    shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    # torch's exporter reports progress on stdout and chatters in warnings and logs
    with _quiet():
        program = torch.onnx.export(
            wrapper, example_inputs(vocab_size), dynamo=True, input_names=list(INPUT_NAMES),
            output_names=list(outputs), dynamic_shapes=shapes, opset_version=opset,
            external_data=False, verbose=False)
        program.save(str(out))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def verify_onnx(path: str | os.PathLike, model: nn.Module, outputs: tuple[str, ...],
                vocab_size: int, atol: float = 1e-4) -> float:
    """Largest |onnxruntime - PyTorch| over outputs and shapes (1x1 up to 3x37, padded
    rows), padded positions included. Raises InferenceError above ``atol``."""
    ort = _require("onnxruntime", "checking the exported graph")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for batch, seq in ((1, 1), (2, 8), (3, 37)):
        inputs = example_inputs(vocab_size, batch, seq, gen)
        feed = {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs, strict=True)}
        got = session.run(list(outputs), feed)
        with torch.inference_mode():
            want = ExportWrapper(model, outputs)(*inputs)
        for name, a, b in zip(outputs, got, want, strict=True):
            diff = float(np.abs(a - b.numpy()).max())
            if diff > atol:
                raise InferenceError(f"{path}: output {name} differs from PyTorch by {diff:.2e} "
                                     f"(> {atol:g}) at batch {batch}, length {seq}")
            worst = max(worst, diff)
    return worst


def _require(module: str, purpose: str) -> object:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InferenceError(f"{module} is not installed, and {purpose} needs it; install "
                             "the extra: pip install 'bertforge[onnx]'") from None
