"""The encoder (``bert.py``) and the heads on top of it (``heads.py``)."""

from bertforge.model.bert import BertModel, BertOutput
from bertforge.model.heads import BertForPreTraining, PreTrainingOutput

__all__ = ["BertForPreTraining", "BertModel", "BertOutput", "PreTrainingOutput"]
