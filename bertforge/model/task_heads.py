"""Fine-tuning heads on top of the encoder: sequence classification (single-label,
multi-label, regression), token classification, question answering (span start/end),
multiple choice, and the paper's feature-based BiLSTM tagger.

Parameter names follow the checkpoint convention of ``bertforge.interop``: the encoder is
``bert``, the task head ``head`` with a ``classifier`` (Hugging Face ``classifier.*``) or a
``qa`` layer (``qa_outputs.*``), so Hugging Face's same-named classes load what we save.

Legend: B = batch, S = sequence length, H = hidden size, C = choices, K = labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import PROBLEM_TYPES, BertConfig
from bertforge.model.bert import BertModel, BertOutput, init_weights
from bertforge.model.dropout import Dropout

IGNORE_INDEX = -100
POOLINGS = ("cls", "mean", "cls-last4")


_T = TypeVar("_T", bound="_TaskModel")  # the subclass from_pretrained returns (3.10: no Self)


def last_layers(config: BertConfig) -> int:
    """How many top layers the "last four" features use: 4, or all L+1 when L < 3."""
    return min(4, config.num_hidden_layers + 1)


@dataclass
class TaskOutput:
    """What every task model returns. ``logits`` is [B, K] (sequence), [B, S, K] (token),
    [B, C] (multiple choice); for question answering ``start_logits``/``end_logits`` [B, S]."""

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def classifier_dropout(config: BertConfig) -> float:
    """Hugging Face's ``classifier_dropout`` when set, else the hidden dropout (0.1 in BERT)."""
    value = config.extra.get("classifier_dropout")
    return config.hidden_dropout_prob if value is None else float(value)


class ClassifierHead(nn.Module):
    """dropout, then a linear layer [..., in] -> [..., out] named ``classifier``."""

    def __init__(self, in_features: int, out_features: int, dropout: float, std: float) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(in_features, out_features)
        init_weights(self.classifier, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x))


class _TaskModel(nn.Module):
    """Shared loading and saving (Hugging Face-shaped directories)."""

    hf_architecture = "BertModel"
    config: BertConfig

    @classmethod
    def from_pretrained(cls: type[_T], path: str | os.PathLike, **overrides: object) -> _T:
        """Load a checkpoint directory; a head the checkpoint lacks is initialised at random.
        ``overrides`` are config fields (``id2label`` or ``num_labels``, ``problem_type``,
        dropout …)."""
        from bertforge.interop.checkpoint import load_pretrained
        return load_pretrained(cls, path, **overrides)

    def save_pretrained(self, path: str | os.PathLike, tokenizer: object = None) -> None:
        """Write ``config.json`` (label map included) + ``model.safetensors`` (+ tokenizer)."""
        from bertforge.interop.checkpoint import save_pretrained
        save_pretrained(self, path, tokenizer=tokenizer)

    def _encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                attention_mask: torch.Tensor | None, hidden: bool, attentions: bool,
                pooler_only: bool = False) -> BertOutput:
        """``pooler_only``: the caller reads ``pooler_output`` alone, so the last layer
        computes only [CLS] (``last_hidden_state`` is then [B, 0, H])."""
        wanted = input_ids.new_zeros(input_ids.shape[0], 0) if pooler_only else None
        return self.bert(input_ids, token_type_ids, attention_mask,
                         output_hidden_states=hidden, output_attentions=attentions,
                         output_positions=wanted)


# ------------------------------------------------------------------ sequence classification
def resolve_problem_type(config: BertConfig, labels: torch.Tensor | None) -> str:
    """``config.problem_type``, else as Hugging Face infers it: one label -> regression,
    integer labels -> single-label, float labels [B, K] -> multi-label."""
    if config.problem_type:
        if config.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"config.problem_type {config.problem_type!r} is not one of "
                             f"{PROBLEM_TYPES}")
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels is not None and labels.dtype.is_floating_point:
        return "multi_label_classification"
    return "single_label_classification"


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """logits [B, K]; labels [B] (class ids or scores) or [B, K] (0/1 indicators)."""
    logits = logits.float()
    if problem_type == "regression":
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), labels.float().view(-1))
        return F.mse_loss(logits, labels.float())
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels.view(-1).long())


def pool(out: BertOutput, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """The sequence representation: ``cls`` = the pooler's tanh(W h_CLS) [B, H]; ``mean`` =
    mean of the last layer over real tokens [B, H]; ``cls-last4`` = the last four layers'
    h_CLS concatenated [B, 4H] (needs hidden states)."""
    if pooling == "cls":
        return out.pooler_output
    if pooling == "mean":
        hidden = out.last_hidden_state
        if attention_mask is None:
            return hidden.mean(1)
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [B, S, 1]
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "cls-last4":
        return torch.cat([h[:, 0] for h in out.hidden_states[-4:]], dim=-1)  # [B, 4H]
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


class BertForSequenceClassification(_TaskModel):
    """Pooled representation -> dropout -> linear [B, K]. ``config.extra["pooling"]`` picks the
    representation (``cls``, the paper's and Hugging Face's, is the default)."""

    hf_architecture = "BertForSequenceClassification"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.pooling = config.extra.get("pooling", "cls")
        if self.pooling not in POOLINGS:
            raise ValueError(f"config pooling {self.pooling!r} is not one of {POOLINGS}")
        self.bert = BertModel(config)
        width = config.hidden_size * (last_layers(config) if self.pooling == "cls-last4" else 1)
        self.head = ClassifierHead(width, config.num_labels, classifier_dropout(config),
                                   config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> TaskOutput:
        """Inputs [B, S]; labels [B] (ids or scores) or [B, K] (multi-label 0/1)."""
        want_hidden = output_hidden_states or self.pooling == "cls-last4"
        out = self._encode(input_ids, token_type_ids, attention_mask, want_hidden,
                           output_attentions, pooler_only=self.pooling == "cls")
        logits = self.head(pool(out, attention_mask, self.pooling))  # [B, K]
        loss = None
        if labels is not None:
            loss = sequence_loss(logits, labels, resolve_problem_type(self.config, labels))
        return TaskOutput(logits=logits, loss=loss,
                          hidden_states=out.hidden_states if output_hidden_states else None,
                          attentions=out.attentions)


# ------------------------------------------------------------------ token classification
def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, S, K]; labels [B, S] with -100 where no label applies (sub-tokens, pads)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten().long(),
                           ignore_index=IGNORE_INDEX)


class BertForTokenClassification(_TaskModel):
    """Every token's last hidden state -> dropout -> linear [B, S, K]. No pooler (as HF)."""

    hf_architecture = "BertForTokenClassification"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=False)
        self.head = ClassifierHead(config.hidden_size, config.num_labels,
                                   classifier_dropout(config), config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> TaskOutput:
        """Inputs and labels [B, S]; labels -100 are ignored."""
        out = self._encode(input_ids, token_type_ids, attention_mask, output_hidden_states,
                           output_attentions)
        logits = self.head(out.last_hidden_state)  # [B, S, K]
        loss = token_loss(logits, labels) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss, hidden_states=out.hidden_states,
                          attentions=out.attentions)


# ------------------------------------------------------------------ question answering
class SpanHead(nn.Module):
    """One linear layer H -> 2 named ``qa``: start and end scores per token."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.qa = nn.Linear(config.hidden_size, 2)
        init_weights(self.qa, config.initializer_range)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.qa(hidden).unbind(-1)  # [B, S, 2] -> 2 x [B, S]
        return start, end


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor,
              start_positions: torch.Tensor, end_positions: torch.Tensor,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the start and end cross-entropies over the real tokens of each row ([B, S]
    ``attention_mask``; padding is no candidate). Positions outside [0, S) are ignored.

    Hugging Face's and Google's softmax also runs over padding, whose logits come from
    whatever the encoder leaves there, so their loss moves with a batch's padding; here
    an example's loss is the same in any batch (and equal to theirs without padding)."""
    seq_len = start_logits.shape[1]
    start = start_positions.view(-1).long().clamp(0, seq_len)  # S itself = "ignore"
    end = end_positions.view(-1).long().clamp(0, seq_len)
    start_logits, end_logits = start_logits.float(), end_logits.float()
    if attention_mask is not None:
        pad = ~attention_mask.bool()
        start_logits = start_logits.masked_fill(pad, torch.finfo(torch.float32).min)
        end_logits = end_logits.masked_fill(pad, torch.finfo(torch.float32).min)
    loss_start = F.cross_entropy(start_logits, start, ignore_index=seq_len)
    loss_end = F.cross_entropy(end_logits, end, ignore_index=seq_len)
    return (loss_start + loss_end) / 2


class BertForQuestionAnswering(_TaskModel):
    """Start/end logits over the tokens [B, S] (SQuAD). No pooler, no dropout (as HF)."""

    hf_architecture = "BertForQuestionAnswering"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=False)
        self.head = SpanHead(config)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> TaskOutput:
        """Inputs [B, S]; positions [B] (token indices; 0 = [CLS] = no answer in v2.0)."""
        out = self._encode(input_ids, token_type_ids, attention_mask, output_hidden_states,
                           output_attentions)
        start, end = self.head(out.last_hidden_state)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions, attention_mask)
        return TaskOutput(loss=loss, start_logits=start, end_logits=end,
                          hidden_states=out.hidden_states, attentions=out.attentions)


# ------------------------------------------------------------------ multiple choice
class BertForMultipleChoice(_TaskModel):
    """Each (context, ending) pair -> pooled -> dropout -> linear H -> 1; softmax over C."""

    hf_architecture = "BertForMultipleChoice"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.head = ClassifierHead(config.hidden_size, 1, classifier_dropout(config),
                                   config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> TaskOutput:
        """Inputs [B, C, S]; labels [B] (index of the right choice); logits [B, C]."""
        b, c, s = input_ids.shape

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(b * c, s)  # [B, C, S] -> [B*C, S]

        out = self._encode(flat(input_ids), flat(token_type_ids), flat(attention_mask),
                           output_hidden_states, output_attentions, pooler_only=True)
        logits = self.head(out.pooler_output).view(b, c)  # [B*C, 1] -> [B, C]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.view(-1).long())
        return TaskOutput(logits=logits, loss=loss, hidden_states=out.hidden_states,
                          attentions=out.attentions)


# ------------------------------------------------------------------ feature-based tagger
class BiLSTMHead(nn.Module):
    """The paper's feature-based NER (section 5.3): frozen BERT's last four layers
    concatenated [B, S, 4H] -> two-layer BiLSTM -> linear [B, S, K]. ``lstm_size`` is
    the units per direction."""

    def __init__(self, config: BertConfig, lstm_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(last_layers(config) * config.hidden_size, lstm_size, num_layers=2,
                            batch_first=True, bidirectional=True,
                            dropout=config.hidden_dropout_prob)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(2 * lstm_size, config.num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor | None
                ) -> torch.Tensor:
        lengths = (attention_mask.sum(1) if attention_mask is not None
                   else torch.full(features.shape[:1], features.shape[1]))
        packed = nn.utils.rnn.pack_padded_sequence(features, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=features.shape[1])
        return self.classifier(self.dropout(out))  # [B, S, 2L] -> [B, S, K]


class BertFeatureTagger(nn.Module):
    """Frozen encoder + :class:`BiLSTMHead`. Only the head trains; the encoder stays in eval
    mode. Saved as the encoder's checkpoint plus ``tagger_head.safetensors``."""

    HEAD_FILE = "tagger_head.safetensors"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=False)
        self.bert.requires_grad_(False)
        self.head = BiLSTMHead(config, int(config.extra.get("lstm_size", 256)))

    def train(self, mode: bool = True) -> BertFeatureTagger:
        super().train(mode)
        self.bert.eval()  # frozen features: no dropout in the encoder
        return self

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
                ) -> TaskOutput:
        """Inputs and labels [B, S]; logits [B, S, K]."""
        with torch.no_grad():
            out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states=True)
        features = torch.cat(out.hidden_states[-4:], dim=-1)  # 4 x [B, S, H] -> [B, S, 4H]
        logits = self.head(features, attention_mask)
        loss = token_loss(logits, labels) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss)

    @classmethod
    def from_pretrained(cls, path: str, **overrides: object) -> BertFeatureTagger:
        """The encoder from ``path``; the head from ``tagger_head.safetensors`` if present."""
        from safetensors.torch import load_file

        from bertforge.interop.checkpoint import CheckpointError, load_state, read_checkpoint
        ckpt = read_checkpoint(path)
        model = cls(ckpt.config.replace(**overrides) if overrides else ckpt.config)
        load_state(model.bert, ckpt, strict=True)
        head_file = Path(path) / cls.HEAD_FILE
        if head_file.is_file():
            try:
                model.head.load_state_dict(load_file(str(head_file)))
            except RuntimeError as err:
                raise CheckpointError(f"{head_file}: does not fit the config in "
                                      f"{Path(path) / 'config.json'} ({err})") from None
        return model.eval()

    def save_pretrained(self, path: str, tokenizer: object = None) -> None:
        """The encoder as a Hugging Face ``BertModel`` directory + the head's safetensors."""
        from safetensors.torch import save_file

        from bertforge.interop.checkpoint import save_pretrained
        self.config.extra["feature_tagger"] = "bilstm"
        save_pretrained(self.bert, path, tokenizer=tokenizer)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, str(Path(path) / self.HEAD_FILE), metadata={"format": "pt"})


TASK_MODELS: dict[str, type[nn.Module]] = {
    "sequence": BertForSequenceClassification,
    "token": BertForTokenClassification,
    "qa": BertForQuestionAnswering,
    "multiple_choice": BertForMultipleChoice,
    "feature_tagger": BertFeatureTagger,
}
