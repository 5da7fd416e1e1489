"""The HTTP server against 127.0.0.1 on an ephemeral port: endpoints, limits, bad requests
(4xx with a message, the server keeps serving), batching of concurrent requests, the CLI.
Every server here is bounded and shut down by the test."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _helpers import serving

from bertforge.cli.main import main
from bertforge.inference import pipeline
from bertforge.inference.server import InferenceServer, make_server
from bertforge.inference.service import InferenceService, ServerLimits

TIMEOUT = 30


def _request(server: InferenceServer, method: str, path: str, body: object = None,
             raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    try:
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def mlm_server(tiny_mlm_dir: Path) -> Iterator[InferenceServer]:
    limits = ServerLimits(max_body_bytes=4096, max_batch_size=8, max_seq_length=16,
                          batch_wait_s=0.05)
    with serving(InferenceService(tiny_mlm_dir, device="cpu", limits=limits)) as server:
        yield server


def test_health_info_openapi(mlm_server: InferenceServer) -> None:
    assert _request(mlm_server, "GET", "/health") == (200, {"status": "ok"})
    status, info = _request(mlm_server, "GET", "/info")
    assert status == 200 and info["endpoints"] == ["/embed", "/fill-mask"]
    assert info["max_seq_length"] == 16 and info["limits"]["max_batch_size"] == 8
    status, schema = _request(mlm_server, "GET", "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    assert {"/embed", "/fill-mask", "/health"} <= set(schema["paths"])
    assert "/predict" not in schema["paths"]


def test_embed_and_fill_mask_equal_the_library(mlm_server: InferenceServer,
                                               tiny_mlm_dir: Path) -> None:
    texts = ["the dog ate food .", "hello world"]
    status, body = _request(mlm_server, "POST", "/embed",
                            {"texts": texts, "pooling": "cls", "normalize": True})
    assert status == 200 and body["dimension"] == 32
    want = pipeline("embed", model=tiny_mlm_dir, pooling="cls", normalize=True)(texts)
    np.testing.assert_allclose(np.array(body["embeddings"]), want, atol=1e-5)
    status, body = _request(mlm_server, "POST", "/fill-mask",
                            {"text": "the capital of france is [MASK] .", "top_k": 3})
    assert status == 200
    want = pipeline("fill-mask", model=tiny_mlm_dir)("the capital of france is [MASK] .",
                                                      top_k=3)
    assert [p["token"] for p in body["results"][0][0]] == [p.token for p in want[0][0]]


@pytest.mark.parametrize(("method", "path", "body", "raw", "status", "message"), [
    ("POST", "/embed", None, b"{not json", 400, "malformed JSON"),
    ("POST", "/embed", None, b'{"text": "caf\xe9"}', 400, "not valid UTF-8"),
    ("POST", "/embed", ["a list"], None, 400, "must be an object"),
    ("POST", "/embed", {"txt": "typo"}, None, 400, "unknown field(s) 'txt'"),
    ("POST", "/embed", {"texts": "not a list"}, None, 400, "must be a list of strings"),
    ("POST", "/embed", {"texts": ["a"] * 9}, None, 413, "the limit is 8"),
    ("POST", "/embed", {"text": "the " * 20}, None, 413, "the limit is 16"),
    ("POST", "/embed", {"text": "x" * 5000}, None, 413, "exceeds the limit of 4096"),
    ("POST", "/embed", {"text": "a", "pooling": "sum"}, None, 400, "one of cls, mean, max"),
    ("POST", "/fill-mask", {"text": "no mask"}, None, 400, "has no [MASK]"),
    ("POST", "/fill-mask", {"text": "[MASK]", "top_k": 0}, None, 400, "between 1 and 50"),
    ("POST", "/predict", {"text": "a"}, None, 404, "not a fine-tuned sequence classifier"),
    ("POST", "/nowhere", {"text": "a"}, None, 404, "no endpoint /nowhere"),
    ("GET", "/embed", None, None, 405, "takes POST"),
])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(
        mlm_server: InferenceServer, method: str, path: str, body: object, raw: bytes | None,
        status: int, message: str) -> None:
    got, reply = _request(mlm_server, method, path, body, raw)
    assert (got, reply["status"]) == (status, status)
    assert message in reply["error"]
    assert _request(mlm_server, "GET", "/health")[0] == 200


def test_truncate_flag_and_content_type(mlm_server: InferenceServer) -> None:
    status, body = _request(mlm_server, "POST", "/embed",
                            {"texts": ["short", "the " * 20], "truncate": True})
    assert status == 200 and body["truncated"] == [1]
    status, body = _request(mlm_server, "POST", "/embed", raw=b'{"text": "a"}',
                            headers={"Content-Type": "text/plain"})
    assert status == 415 and "send application/json" in body["error"]
    status, body = _request(mlm_server, "POST", "/embed", raw=b'{"text": "a"}',  # curl -d
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200


def test_concurrent_requests_share_batches(mlm_server: InferenceServer) -> None:
    service = mlm_server.service
    before = service.batcher.batches_run
    texts = [f"the {w} is here ." for w in ("dog", "cat", "car", "house", "book", "river")]
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda t: _request(mlm_server, "POST", "/embed", {"text": t}),
                                texts))
    assert all(status == 200 for status, _ in replies)
    assert service.batcher.batches_run - before < len(texts)  # some requests were merged
    alone = [_request(mlm_server, "POST", "/embed", {"text": t})[1]["embeddings"][0]
             for t in texts[:2]]
    np.testing.assert_allclose([r["embeddings"][0] for _, r in replies[:2]], alone, atol=1e-5)


def test_predict_on_a_classifier(tiny_classifier_dir: Path) -> None:
    service = InferenceService(tiny_classifier_dir, device="cpu")
    server = make_server(service, "127.0.0.1", 0, max_requests=2, log=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        status, body = _request(server, "POST", "/predict",
                                {"texts": ["a good day", "a bad night"], "pairs": ["yes", "no"]})
        assert status == 200
        want = pipeline("text-classification", model=tiny_classifier_dir)(
            ["a good day", "a bad night"], ["yes", "no"])
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in want]
        assert set(body["predictions"][0]["scores"]) == {"negative", "positive"}
        status, info = _request(server, "GET", "/info")
        assert "/predict" in info["endpoints"] and info["labels"] == ["negative", "positive"]
    finally:
        thread.join(timeout=TIMEOUT)  # max_requests=2 stops the server by itself
        server.server_close()
        service.close()
    assert not thread.is_alive() and server.served == 2


def test_cli_serve_stops_after_max_requests(tiny_mlm_dir: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(
        ["serve", "--model", str(tiny_mlm_dir), "--port", str(port), "--device", "cpu",
         "--max-requests", "1", "--quiet"])))
    thread.start()
    conn = None
    for _ in range(200):  # wait until it listens (bounded)
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=0.1)
            break
        except OSError:
            thread.join(timeout=0.05)
    assert conn is not None, "server did not start"
    conn.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    reply = conn.makefile("rb").read()
    conn.close()
    thread.join(timeout=TIMEOUT)
    assert b"200 OK" in reply and b'"ok"' in reply
    assert codes == [0]
    out = capsys.readouterr().out
    assert f"on http://127.0.0.1:{port}" in out and "served 1 request(s)" in out


def test_batcher_isolates_a_failing_request() -> None:
    from bertforge.inference.service import MicroBatcher

    def run(kind: str, options: tuple, texts: list[str], pairs: object) -> list[str]:
        if "bad" in texts:
            raise ValueError("bad input")
        return [t.upper() for t in texts]

    batcher = MicroBatcher(run, max_batch=8, wait_s=0.2)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(batcher.submit, "k", (), [t], None, TIMEOUT)
                       for t in ("a", "bad", "b")]
            assert futures[0].result() == ["A"] and futures[2].result() == ["B"]
            with pytest.raises(ValueError, match="bad input"):
                futures[1].result()
    finally:
        batcher.close()
    assert not batcher.worker.is_alive()
