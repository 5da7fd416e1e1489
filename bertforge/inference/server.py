"""A JSON-over-HTTP server on the standard library (``http.server.ThreadingHTTPServer``).

Endpoints: ``GET /health``, ``GET /info``, ``GET /openapi.json``; ``POST /embed``,
``POST /fill-mask`` (models with the masked-LM head), ``POST /predict`` (sequence
classifiers). Every error is JSON ``{"error": message, "status": code}`` with a 4xx code
for bad requests (400 malformed or wrong fields, 404 unknown or unavailable endpoint, 405
wrong method, 408 body too slow, 411 no Content-Length, 413 too large, 415 not JSON); the
server keeps serving. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bertforge.inference.service import InferenceService, RequestError

GET_ROUTES = ("/health", "/info", "/openapi.json")
POST_ROUTES = {"/embed": "embed", "/fill-mask": "fill", "/predict": "predict"}
# curl -d sends form-urlencoded unless told otherwise; its body is still read as JSON
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded")
DRAIN_LIMIT = 16 * 2**20  # bytes of an oversized body read and dropped before replying 413
READ_TIMEOUT_S = 60.0  # seconds a client may pause while sending its request


class InferenceServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the service; stops itself after ``max_requests``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: InferenceService,
                 max_requests: int | None = None, log: bool = True) -> None:
        super().__init__(address, RequestHandler)
        self.service = service
        self.max_requests = max_requests
        self.log = log
        self.served = 0
        self._count_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def request_done(self) -> None:
        """Count a finished request; at ``max_requests`` shut down (from another thread,
        since shutdown() waits for serve_forever to return)."""
        with self._count_lock:
            self.served += 1
            done = self.max_requests is not None and self.served >= self.max_requests
        if done:
            threading.Thread(target=self.shutdown, daemon=True).start()


class RequestHandler(BaseHTTPRequestHandler):
    """Routes requests to the service; turns every failure into a JSON error response."""

    server: InferenceServer
    server_version = "bertforge"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads
    timeout = READ_TIMEOUT_S  # a client that stops sending does not hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._respond(self._get)

    def do_HEAD(self) -> None:  # noqa: N802 - GET's status and headers, no body
        self._respond(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._respond(self._post)

    def _other_method(self) -> None:
        self._respond(self._refuse_method)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other_method  # noqa: N815

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, a header too long, a
        timeout) as JSON like every other error, not its HTML page."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(code, {"error": message or phrase, "status": code})

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self.server.request_done()

    # ------------------------------------------------------------ dispatch
    def _get(self) -> dict:
        path = self.path.split("?", 1)[0]
        service = self.server.service
        if path == "/health":
            return {"status": "ok"}
        if path == "/info":
            return service.info()
        if path == "/openapi.json":
            return openapi_schema(service)
        if path in POST_ROUTES:
            raise RequestError(405, f"{path} takes POST with a JSON body")
        raise RequestError(404, f"no endpoint {path}; see GET /openapi.json")

    def _refuse_method(self) -> dict:
        path = self.path.split("?", 1)[0]
        if path in POST_ROUTES:
            raise RequestError(405, f"{self.command} is not supported: {path} takes POST")
        if path in GET_ROUTES:
            raise RequestError(405, f"{self.command} is not supported: {path} takes GET")
        raise RequestError(404, f"no endpoint {path}; see GET /openapi.json")

    def _post(self) -> dict:
        path = self.path.split("?", 1)[0]
        if path in GET_ROUTES:
            raise RequestError(405, f"{path} takes GET")
        if path not in POST_ROUTES:
            raise RequestError(404, f"no endpoint {path}; see GET /openapi.json")
        self.server.service.check_available(path)
        body = self._read_json()
        return getattr(self.server.service, POST_ROUTES[path])(body)

    def _respond(self, route: Callable[[], dict]) -> None:
        start = time.perf_counter()
        try:
            status, payload = 200, route()
        except RequestError as err:
            status, payload = err.status, {"error": str(err), "status": err.status}
        except Exception as err:  # a bug, not the client's fault; keep serving
            status = 500
            payload = {"error": f"internal error: {type(err).__name__}: {err}", "status": 500}
        self._send(status, payload)
        if self.server.log:
            ms = (time.perf_counter() - start) * 1000
            sys.stderr.write(f"{self.client_address[0]} {self.command} {self.path} {status} "
                             f"{ms:.1f} ms\n")

    # ------------------------------------------------------------ body and reply
    def _read_json(self) -> dict:
        limit = self.server.service.limits.max_body_bytes
        kind = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if kind not in JSON_TYPES:
            raise RequestError(415, f"Content-Type {kind} is not supported; send "
                                    "application/json")
        size = self._content_length()
        if size > limit:
            self._discard(size)
            raise RequestError(413, f"request body of {size} bytes exceeds the limit of "
                                    f"{limit} bytes")
        try:
            raw = self.rfile.read(size)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(408, f"the request body ({size} bytes, as Content-Length "
                                    f"says) did not arrive within {self.timeout:g} s") from None
        if len(raw) < size:
            raise RequestError(400, f"the request body has {len(raw)} bytes but "
                                    f"Content-Length says {size}")
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise RequestError(400, f"request body is not valid UTF-8 (byte {err.start})") \
                from None
        except json.JSONDecodeError as err:
            raise RequestError(400, f"malformed JSON at line {err.lineno} column {err.colno}: "
                                    f"{err.msg}") from None
        except RecursionError:
            raise RequestError(400, "the JSON body is nested too deeply") from None
        except ValueError as err:  # e.g. an integer of more than 4300 digits
            raise RequestError(400, f"the JSON body cannot be read: {err}") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the JSON body must be an object, e.g. {\"texts\": [...]}")
        return body

    def _discard(self, size: int) -> None:
        """Read and drop an oversized body (up to 16 MB), so that closing the socket does not
        reset the connection before the client reads the 413; beyond that, just close."""
        self.close_connection = True
        left = size if size <= DRAIN_LIMIT else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def _content_length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            raise RequestError(411, "a Content-Length header is required")
        try:
            size = int(value)
        except ValueError:
            raise RequestError(400, f"Content-Length {value!r} is not a number") from None
        if size < 0:
            raise RequestError(400, "Content-Length must not be negative")
        return size

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client left before the reply
            self.close_connection = True
            if self.server.log:
                sys.stderr.write(f"{self.client_address[0]} {self.command} {self.path}: the "
                                 "client closed the connection before the reply\n")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silenced: ``_respond`` writes one line per request when logging is on."""


def make_server(service: InferenceService, host: str = "127.0.0.1", port: int = 8000,
                max_requests: int | None = None, log: bool = True) -> InferenceServer:
    """A bound (not yet serving) server; port 0 picks a free port (see ``.url``)."""
    try:
        return InferenceServer((host, port), service, max_requests, log)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror}); pick another "
                      "--port or --host") from None


# ------------------------------------------------------------------ OpenAPI
def openapi_schema(service: InferenceService) -> dict:
    """An OpenAPI 3.0 description of the endpoints this model offers."""
    texts = {"text": {"type": "string"},
             "texts": {"type": "array", "items": {"type": "string"},
                       "maxItems": service.limits.max_batch_size}}
    posts = {
        "/embed": _operation("Sentence embeddings", {
            **texts, "pooling": {"type": "string", "enum": ["cls", "mean", "max"]},
            "normalize": {"type": "boolean"}, "truncate": {"type": "boolean"}},
            {"embeddings": {"type": "array", "items": {"type": "array",
                                                       "items": {"type": "number"}}},
             "dimension": {"type": "integer"}, "truncated": {"type": "array"}}),
        "/fill-mask": _operation("Top-k tokens at each [MASK]", {
            **texts, "top_k": {"type": "integer", "minimum": 1,
                               "maximum": service.limits.max_top_k}},
            {"results": {"type": "array", "description": "per text, per [MASK], candidates "
                         "{token, token_id, score, sequence}"}}),
        "/predict": _operation("Labels and probabilities of a sequence classifier", {
            **texts, "pair": {"type": "string"},
            "pairs": {"type": "array", "items": {"type": "string"}},
            "truncate": {"type": "boolean"}},
            {"predictions": {"type": "array"}, "truncated": {"type": "array"}}),
    }
    paths = {path: {"post": op} for path, op in posts.items() if path in service.endpoints}
    for path, summary in (("/health", "Liveness"), ("/info", "Model and limits"),
                          ("/openapi.json", "This document")):
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.3",
            "info": {"title": "bertforge", "version": "1",
                     "description": f"Inference with {service.model_dir}"},
            "paths": paths}


def _operation(summary: str, request: dict, response: dict) -> dict:
    error = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"},
                                         "status": {"type": "integer"}}}}}}
    return {"summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": request, "additionalProperties": False}}}},
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "object", "properties": response}}}},
                "400": error, "404": error, "413": error}}
