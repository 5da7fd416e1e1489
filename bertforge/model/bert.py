"""The BERT encoder, top to bottom: embeddings, attention, layer, encoder, pooler, BertModel.

Legend for shape comments (one per function where reshapes happen):
    B = batch size           S = sequence length       H = hidden size
    N = attention heads      D = head size (H / N)     I = intermediate size

This file is single-device forward code: no device moves, no autocast, no
printing. Precision, compilation and parallelism are applied from outside. Dropping
padding (``Unpadded``) lives in ``unpad.py``.
Checkpoint name mapping lives in ``bertforge.interop``; heads in ``heads.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.dropout import Dropout, _AttentionDropout, dropout, quantized
from bertforge.model.unpad import Unpadded, packed_positions, run_starts

UNPAD_MIN_PADDING = 0.1  # share of padding from which dropping it pays (see BertModel.forward)
# where unpadding pays. Not on CUDA (H100, bench/RESULTS.md): there the host waits for
# the lengths (nonzero, max) in every forward, and each new width is a new attention
# shape; padded batches ran 1.08-1.32x faster than unpadded ones, and the padded path
# already handles packed rows (a block-diagonal mask)
UNPAD_DEVICES = ("cpu",)


@dataclass
class BertOutput:
    """What BertModel returns. Hidden states and attentions only when asked for."""

    last_hidden_state: torch.Tensor  # [B, S, H]
    pooler_output: torch.Tensor | None  # [B, H], tanh(W h_CLS + b)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L+1 of [B, S, H], embeddings first
    attentions: tuple[torch.Tensor, ...] | None = None  # L of [B, N, S, S], post-softmax


def activation(name: str) -> nn.Module:
    """BERT's activations. ``gelu`` is exact (erf); ``gelu_new`` is Google's tanh form."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}[name]()


class Embeddings(nn.Module):
    """Token + learned position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Positions are 0..S-1 unless ``position_ids`` [B, S] says otherwise."""
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(position_ids))  # [B, S, H] + [S or B, S, H]
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q = nn.Linear(h, h)
        self.k = nn.Linear(h, h)
        self.v = nn.Linear(h, h)
        self.o = nn.Linear(h, h)
        self.dropout_p = config.attention_probs_dropout_prob
        self.is_causal = config.is_causal

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, want_probs: bool = False,
                unpadded: Unpadded | None = None, queries: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, S, H], or [T, H] with ``unpadded`` (attention then runs on its [R, W]
        layout); mask: bool [B, 1, 1|S, S] (or [R, 1, 1|W, W]), True where a query may
        look. The output has the layout of x; with ``queries`` [B, P, H] (padded layout
        only) only those query rows are computed (keys and values still come from x) and
        the output is [B, P, H]."""
        relayout = unpadded.to_rows if unpadded is not None else (lambda t: t)

        def heads(t: torch.Tensor) -> torch.Tensor:
            t = relayout(t)  # [T, H] -> [R, W, H] when unpadded
            b, s, _ = t.shape
            return t.view(b, s, self.num_heads, -1).transpose(1, 2)  # -> [B, N, S, D]

        q = heads(self.q(x if queries is None else queries))
        k, v = heads(self.k(x)), heads(self.v(x))
        b, _, s, _ = q.shape
        dropout_p = self.dropout_p if self.training else 0.0
        if want_probs:  # the explicit path, only to hand probabilities back
            context, probs = _attention_with_probs(q, k, v, mask, dropout_p)
        elif (dropout_p > 0 and q.device.type == "cpu" and quantized(dropout_p) < 1.0
              and not _tracing()):
            context, probs = _AttentionDropout.apply(q, k, v, mask, dropout_p), None
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            probs = None
        context = context.transpose(1, 2).reshape(b, s, -1)  # [B, N, S, D] -> [B, S, H]
        if unpadded is not None:
            context = unpadded.from_rows(context)  # [R, W, H] -> [T, H]
        return self.o(context), probs


def _attention_with_probs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor | None, dropout_p: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T / sqrt(D)) V, returning the probabilities [B, N, S, S] too."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, N, S, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1)
    return dropout(probs, dropout_p, dropout_p > 0) @ v, probs


class FeedForward(nn.Module):
    """Position-wise H -> I -> H with BERT's activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class Layer(nn.Module):
    """One post-LN Transformer block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(config)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, want_probs: bool = False,
                unpadded: Unpadded | None = None, queries: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``queries`` [B, P, H]: compute only these rows of the output (see SelfAttention)."""
        attended, probs = self.attn(x, mask, want_probs, unpadded, queries)
        x = self.attn_norm((x if queries is None else queries) + self.dropout(attended))
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))
        return x, probs


class Pooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence representation that NSP and classifiers read."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # [B, S, H] -> [B, H]


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick rows of ``hidden`` [B, S, H] at ``positions`` [B, P] -> [B, P, H]."""
    index = positions.long().unsqueeze(-1).expand(-1, -1, hidden.shape[-1])  # [B, P, H]
    return hidden.gather(1, index)


def _tracing() -> bool:
    """True under torch.compile or export, where data-dependent shortcuts must not run."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def attention_mask_4d(attention_mask: torch.Tensor | None, seq_len: int,
                      is_causal: bool, device: torch.device,
                      sequence_ids: torch.Tensor | None = None) -> torch.Tensor | None:
    """Boolean mask for SDPA: [B, S] padding mask -> [B, 1, 1, S] (or [B, 1, S, S] if causal
    or packed: with ``sequence_ids`` [B, S] a query sees only its own sequence's keys).

    Returns None when nothing is masked, so SDPA may take its fastest kernel (a look at the
    data that traced code skips: ``torch.compile`` and ONNX export always get the mask).
    """
    mask = None
    if sequence_ids is not None:
        runs = run_starts(sequence_ids).cumsum(1)  # [B, S]: a run of equal ids = a sequence
        mask = runs[:, :, None] == runs[:, None, :]  # [B, S, S], block diagonal
        if attention_mask is not None:
            real = attention_mask.bool()
            # padding queries look at every key (never an empty row: SDPA would give NaN)
            mask = (mask & real[:, None, :]) | ~real[:, :, None]
        mask = mask[:, None]  # [B, S, S] -> [B, 1, S, S]
    elif attention_mask is not None and (_tracing() or not bool(attention_mask.all())):
        mask = attention_mask.bool()[:, None, None, :]  # [B, S] -> [B, 1, 1, S]
    if is_causal:
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
        mask = causal[None, None] if mask is None else mask & causal  # [B, 1, S, S]
    return mask


class BertModel(nn.Module):
    """The BERT encoder with its pooler. ``from_pretrained``/``save_pretrained`` read and
    write Hugging Face-shaped directories (see ``bertforge.interop``)."""

    def __init__(self, config: BertConfig, add_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config) if add_pooler else None
        self.unpad = True  # drop padding before the first layer (same function, less work)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False,
                sequence_ids: torch.Tensor | None = None,
                output_positions: torch.Tensor | None = None) -> BertOutput:
        """input_ids, token_type_ids, attention_mask: [B, S] (mask 1 = real token, 0 = pad).

        ``sequence_ids`` [B, S] marks packed rows: each run of equal ids is a sequence of
        its own (attention stays inside it, positions restart at 0), so every sequence
        gets what it would get alone in a row.

        ``output_positions`` [B, P]: only these positions' outputs are wanted (the masked
        tokens of MLM; none, [B, 0], for a classifier that reads the pooler). Then
        ``last_hidden_state`` is [B, P, H], row j being position ``output_positions[:, j]``,
        and the last layer computes only those rows and [CLS] (its keys and values still
        come from every token): the same function for a fraction of the last layer's work.
        """
        self._check_inputs(input_ids, token_type_ids, attention_mask, sequence_ids)
        _, seq_len = input_ids.shape
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}; truncate the input")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = packed_positions(sequence_ids) if sequence_ids is not None else None
        x = self.embeddings(input_ids, token_type_ids, positions)
        unpadded = self._unpadded(attention_mask, sequence_ids,
                                  output_hidden_states or output_attentions)
        if unpadded is not None:
            x = unpadded.unpad(x)  # [B, S, H] -> [T, H]
            mask = unpadded.attention_mask(self.config.is_causal)  # over [R, W]
        else:
            mask = attention_mask_4d(attention_mask, seq_len, self.config.is_causal,
                                     input_ids.device, sequence_ids)
        prune = output_positions is not None and not (
            output_hidden_states or output_attentions or self.config.is_causal
            or sequence_ids is not None or not self.layers)
        hidden, attentions = [x], []
        for layer in self.layers[:-1] if prune else self.layers:
            x, probs = layer(x, mask, output_attentions, unpadded)
            hidden.append(x)
            attentions.append(probs)
        if unpadded is not None:
            x = unpadded.pad(x)  # [T, H] -> [B, S, H], zeros at padding
        pooled = None
        if prune:
            assert output_positions is not None
            if unpadded is not None:  # the last layer runs padded: [B, 1, 1, S] key mask
                mask = attention_mask_4d(attention_mask, seq_len, False, input_ids.device)
            x, pooled = self.last_layer_at(x, mask, output_positions)
        else:
            if self.pooler is not None:
                pooled = self.pooler(x)
            if output_positions is not None:
                x = gather_positions(x, output_positions)  # [B, S, H] -> [B, P, H]
        return BertOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _check_inputs(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                      attention_mask: torch.Tensor | None,
                      sequence_ids: torch.Tensor | None) -> None:
        """Shapes always; id ranges on the CPU (elsewhere reading them would make the host
        wait for the device in every forward), outside tracing. Errors name the input."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, sequence], got shape "
                             f"{list(input_ids.shape)}; for one input use input_ids[None]")
        for name, t in (("token_type_ids", token_type_ids),
                        ("attention_mask", attention_mask), ("sequence_ids", sequence_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {list(t.shape)} but input_ids has "
                                 f"{list(input_ids.shape)}; they must be the same")
        if input_ids.device.type != "cpu" or _tracing() or not input_ids.numel():
            return
        for name, t, limit, field in (
                ("input_ids", input_ids, self.config.vocab_size, "vocab_size"),
                ("token_type_ids", token_type_ids, self.config.type_vocab_size,
                 "type_vocab_size")):
            if t is not None and (int(t.min()) < 0 or int(t.max()) >= limit):
                raise ValueError(f"{name} holds {int(t.min())}..{int(t.max())}, outside the "
                                 f"model's 0..{limit - 1} ({field} {limit}); was the input "
                                 "encoded with another vocabulary?")

    def last_layer_at(self, x: torch.Tensor, mask: torch.Tensor | None,
                      positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer on the rows ``positions`` [B, P] and [CLS] only (its keys and
        values still come from every row of ``x`` [B, S, H]): ([B, P, H], pooler output)."""
        cls = positions.new_zeros(positions.shape[0], 1)
        wanted = torch.cat([cls, positions], dim=1)  # [B, 1 + P]
        x = self.layers[-1](x, mask, queries=gather_positions(x, wanted))[0]
        pooled = self.pooler(x) if self.pooler is not None else None  # reads row 0: [CLS]
        return x[:, 1:], pooled

    def _unpadded(self, attention_mask: torch.Tensor | None, sequence_ids: torch.Tensor | None,
                  per_layer_outputs: bool) -> Unpadded | None:
        """Unpad when over 10% of the batch is padding (below that the gathers around
        attention cost more than the padding: ~10% of MiniLM's CPU time), always for packed
        rows (each sequence then attends alone instead of through an [B, S, S] mask), and
        never when someone asked for per-layer [B, S, ...] outputs or under tracing; only on
        the devices of ``UNPAD_DEVICES`` (the CPU)."""
        given = attention_mask if attention_mask is not None else sequence_ids
        if (not self.unpad or per_layer_outputs or _tracing() or given is None
                or given.device.type not in UNPAD_DEVICES):
            return None
        if sequence_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(sequence_ids)
            return Unpadded.from_mask(attention_mask, sequence_ids)
        if attention_mask is None or float(attention_mask.float().mean()) >= 1 - UNPAD_MIN_PADDING:
            return None
        return Unpadded.from_mask(attention_mask)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: object) -> BertModel:
        """Load a Hugging Face-shaped directory, a Google TF checkpoint directory, or ours."""
        from bertforge.interop.checkpoint import load_pretrained
        return load_pretrained(cls, path, **kwargs)

    def save_pretrained(self, path: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` with Hugging Face's key names."""
        from bertforge.interop.checkpoint import save_pretrained
        save_pretrained(self, path)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) weights (truncation at 2 std makes no measurable
    difference at std 0.02), zero biases, LayerNorm weight 1 and bias 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
