"""``bertforge serve``: a JSON HTTP server for a model directory (see
``bertforge.inference.server`` for the endpoints)."""

from __future__ import annotations

import argparse
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", default=None, help="checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--max-batch-size", type=int, default=64,
                        help="most texts per request, and per merged batch (default 64)")
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="TOKENS",
                        help="longest input; longer ones get HTTP 413 unless the request says "
                             '"truncate": true (default: the model\'s limit)')
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="largest request body (default 1000000); larger gets HTTP 413")
    parser.add_argument("--max-requests", type=int, default=None, metavar="N",
                        help="stop after N requests (for scripts and tests)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")


def run(args: argparse.Namespace) -> int:
    from bertforge.inference.server import make_server
    from bertforge.inference.service import InferenceService, ServerLimits

    if not args.model:
        raise ValueError("serve needs --model DIR (see 'bertforge serve --help')")
    for name in ("max_batch_size", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    limits = ServerLimits(max_body_bytes=args.max_body_bytes,
                          max_batch_size=args.max_batch_size,
                          max_seq_length=args.max_seq_length)
    service = InferenceService(args.model, device=args.device, limits=limits)
    try:
        server = make_server(service, args.host, args.port, args.max_requests,
                             log=not args.quiet)
    except OSError:
        service.close()
        raise
    if args.host not in LOOPBACK:
        print(f"bertforge serve: warning: listening on {args.host}, reachable from other "
              "machines; the server has no authentication", file=sys.stderr)
    print(f"serving {', '.join(service.endpoints)} for {args.model} on {server.url} "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()
    print(f"served {server.served} request(s)", flush=True)
    return 0
