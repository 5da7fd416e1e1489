"""Pre-training heads on top of the encoder: masked LM and next-sentence prediction.

Legend: B = batch, S = sequence length, P = masked positions per row, H = hidden,
V = vocabulary size, M = masked tokens in the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.bert import BertModel, activation, init_weights

IGNORE_INDEX = -100


@dataclass
class PreTrainingOutput:
    """``prediction_logits`` is [B, S, V], or [B, P, V] when masked positions were given."""

    prediction_logits: torch.Tensor | None
    seq_relationship_logits: torch.Tensor | None  # [B, 2]: 0 = IsNext, 1 = NotNext
    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class MLMHead(nn.Module):
    """dense + activation + LayerNorm, then a decoder tied to the word embeddings, + bias."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., V] logits. ``decoder_weight`` [V, H] is the word embedding
        matrix (tied, as in the paper), passed in so that it has exactly one owner."""
        return F.linear(self.norm(self.act(self.dense(hidden))), decoder_weight, self.bias)


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM head (scored at all or only the masked positions) and NSP."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.mlm = MLMHead(config)
        self.nsp = nn.Linear(config.hidden_size, 2)
        init_weights(self.mlm.dense, config.initializer_range)
        init_weights(self.nsp, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                masked_positions: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None,
                output_hidden_states: bool = False,
                output_attentions: bool = False,
                sequence_ids: torch.Tensor | None = None) -> PreTrainingOutput:
        """With ``masked_positions`` [B, P] the MLM head runs only there and ``labels`` is
        [B, P]; otherwise it runs everywhere and ``labels`` is [B, S]. Labels equal to -100
        (padding of P, unmasked tokens) are ignored. ``next_sentence_label``: [B].
        ``sequence_ids`` [B, S]: packed rows (see ``BertModel.forward``)."""
        out = self.bert(input_ids, token_type_ids, attention_mask,
                        output_hidden_states=output_hidden_states,
                        output_attentions=output_attentions, sequence_ids=sequence_ids,
                        output_positions=masked_positions)
        hidden = out.last_hidden_state  # [B, P, H] with masked_positions, else [B, S, H]
        logits = self.mlm(hidden, self.bert.embeddings.word_embeddings.weight)  # [B, S|P, V]
        nsp_logits = self.nsp(out.pooler_output)  # [B, 2]
        mlm_loss = nsp_loss = None
        if labels is not None:
            mlm_loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                       ignore_index=IGNORE_INDEX)
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
        parts = [p for p in (mlm_loss, nsp_loss) if p is not None]
        return PreTrainingOutput(
            prediction_logits=logits, seq_relationship_logits=nsp_logits,
            loss=sum(parts) if parts else None, mlm_loss=mlm_loss, nsp_loss=nsp_loss,
            hidden_states=out.hidden_states, attentions=out.attentions)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: object) -> BertForPreTraining:
        """Load a Hugging Face-shaped directory or a Google TF checkpoint directory."""
        from bertforge.interop.checkpoint import load_pretrained
        return load_pretrained(cls, path, **kwargs)

    def save_pretrained(self, path: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` with Hugging Face's key names."""
        from bertforge.interop.checkpoint import save_pretrained
        save_pretrained(self, path)
