"""Hypothesis fuzzing of the HTTP server's request parsing (``inference/server.py`` and
``service.py``): arbitrary JSON bodies and arbitrary bytes sent to every endpoint get a 200
or a 4xx JSON error naming the problem, never a 500, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _helpers import tiny_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bertforge.inference.server import InferenceServer, make_server
from bertforge.inference.service import InferenceService, ServerLimits

TIMEOUT = 30
FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
WORDS = ("the a of to and in is was it dog cat food bread capital city france paris big "
         "small good bad day night hello world").split()
LIMITS = ServerLimits(max_body_bytes=16384, max_batch_size=8, max_seq_length=16,
                      batch_wait_s=0.0)


def _save_tiny(model: torch.nn.Module, path: Path) -> Path:
    from bertforge.tokenization import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", *WORDS]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    model.save_pretrained(str(path))
    BertTokenizer.from_vocab(vocab[:model.config.vocab_size], lowercase=True).save(path)
    return path


def _serve(model_dir: Path) -> Iterator[InferenceServer]:
    service = InferenceService(model_dir, device="cpu", limits=LIMITS)
    server = make_server(service, "127.0.0.1", 0, log=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)
        service.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, InferenceServer]]:
    """A masked-LM model (/embed, /fill-mask) and a classifier (/embed, /predict)."""
    from bertforge.model import BertForPreTraining
    from bertforge.model.task_heads import BertForSequenceClassification

    torch.manual_seed(0)
    size = 9 + len(WORDS) + 26
    mlm = _save_tiny(BertForPreTraining(tiny_config(vocab_size=size)).eval(),
                     tmp_path_factory.mktemp("mlm"))
    clf = _save_tiny(BertForSequenceClassification(tiny_config(
        vocab_size=size, id2label={0: "negative", 1: "positive"})).eval(),
        tmp_path_factory.mktemp("clf"))
    mlm_gen, clf_gen = _serve(mlm), _serve(clf)
    yield {"mlm": next(mlm_gen), "clf": next(clf_gen)}
    for gen in (mlm_gen, clf_gen):
        next(gen, None)  # the finally: shut down


def _post(server: InferenceServer, path: str, data: bytes,
          headers: dict[str, str] | None = None) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=data,
                     headers=headers or {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _check(server: InferenceServer, path: str, data: bytes) -> None:
    status, reply = _post(server, path, data)
    assert status == 200 or 400 <= status < 500, (status, reply)
    if status != 200:
        assert reply["status"] == status and isinstance(reply["error"], str) and reply["error"]


TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from([*WORDS, "[MASK]", "[CLS]", "[SEP]", "[PAD]", "##s", "."]),
             max_size=30).map(" ".join),
    st.sampled_from(["\ud800", "a\udfff[MASK]", "\x00[MASK]", "", " ", "[MASK]" * 30,
                     "\u202e[mask]", "ﬁ [MASK]"]))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT,
                   st.sampled_from([10**400, -1, 0, 51, 2**63, "cls", "mean", "max"]))
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
FIELDS = ("text", "texts", "pair", "pairs", "pooling", "normalize", "truncate", "top_k")
BODY = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), st.one_of(TEXT, st.lists(TEXT, max_size=10),
                                                       SCALAR, JSON), max_size=4),
    JSON)
ENDPOINT = st.sampled_from(["/embed", "/fill-mask", "/predict"])


def _encode(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # lone surrogates go as \ud800 escapes


@FUZZ
@given(body=BODY, path=ENDPOINT, which=st.sampled_from(["mlm", "clf"]))
@example(body={"text": "\ud800 [MASK]"}, path="/fill-mask", which="mlm")
@example(body={"texts": ["a\udfff"], "pairs": ["b"]}, path="/predict", which="clf")
@example(body={"text": "the [MASK]", "top_k": 1.5}, path="/fill-mask", which="mlm")
@example(body={"text": "x", "pooling": ["cls"]}, path="/embed", which="mlm")
def test_any_json_body_gets_200_or_4xx(servers: dict[str, InferenceServer], body: object,
                                       path: str, which: str) -> None:
    _check(servers[which], path, _encode(body))


@FUZZ
@given(data=st.one_of(st.binary(max_size=200),
                      st.builds(lambda b, junk: _encode(b)[:-1] + junk, BODY,
                                st.binary(max_size=8))),
       path=ENDPOINT)
@example(data=b'{"top_k": ' + b"1" * 5000 + b"}", path="/fill-mask")
@example(data=b"[" * 10_000, path="/embed")
@example(data=b'{"text": NaN, "texts": Infinity}', path="/embed")
def test_any_bytes_get_200_or_4xx(servers: dict[str, InferenceServer], data: bytes,
                                  path: str) -> None:
    _check(servers["mlm"], path, data)


def test_the_servers_still_serve_after_the_fuzzing(servers: dict[str, InferenceServer]
                                                   ) -> None:
    for name, path, body in (("mlm", "/fill-mask", {"text": "the [MASK] ."}),
                             ("clf", "/predict", {"text": "a good day"})):
        status, reply = _post(servers[name], path, _encode(body))
        assert status == 200, reply
