"""WordPiece tokenization with BERT's exact rules (no torch here)."""

from bertforge.tokenization.io import load_tokenizer, read_vocab, train_wordpiece
from bertforge.tokenization.wordpiece import (
    SPECIAL_TOKENS,
    BatchEncoding,
    BertTokenizer,
    Encoding,
    TokenizerError,
)

__all__ = ["SPECIAL_TOKENS", "BatchEncoding", "BertTokenizer", "Encoding", "TokenizerError",
           "load_tokenizer", "read_vocab", "train_wordpiece"]
