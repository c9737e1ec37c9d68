"""`mc listen`: a receiver for status callbacks on this machine, for trying an integration out. It
answers each POST, checks its `X-MC-Signature` with the account's callback secret and prints one
line per callback; a callback whose signature does not match is answered 401 and printed as such."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from messaging_center_client.signatures import verify_signature

EXIT_OK, EXIT_ERROR = 0, 1


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    listen = commands.add_parser(
        "listen",
        help="receive status callbacks here and verify their signatures",
        description="Serve http://HOST:PORT/ for status callbacks (set it as the account's callback_url), verify each "
        "signature with the callback secret, print a line per callback.",
        parents=parents,
    )
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument(
        "--secret", default=os.environ.get("MC_CALLBACK_SECRET", ""), help="the callback secret (MC_CALLBACK_SECRET)"
    )
    listen.add_argument("--count", type=int, metavar="N", help="exit 0 after N verified callbacks")
    listen.add_argument("--timeout", type=float, metavar="SECONDS", help="exit 1 if they have not come by then")
    listen.set_defaults(run=run)


def run(ctx: Any) -> int:
    args = ctx.args
    if not args.secret:
        ctx.stderr.write("mc listen: give the callback secret (--secret or MC_CALLBACK_SECRET)\n")
        return 2
    verified = threading.Semaphore(0)
    out: TextIO = ctx.stdout
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = verify_signature(dict(self.headers), body, args.secret)
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            try:
                event = json.loads(body)
                what = f"{event.get('message_id')} {event.get('status')} {event.get('code') or ''}".rstrip()
            except ValueError:
                what = f"{len(body)} bytes, not JSON"
            with lock:
                out.write(f"{'verified' if ok else 'REJECTED (bad signature)'}: {what}\n")
                out.flush()
            if ok:
                verified.release()

        def log_message(self, format: str, *log_args: Any) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctx.stderr.write(f"listening on http://{args.host}:{server.server_address[1]}/\n")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        for _ in range(args.count or 1 << 62):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not verified.acquire(timeout=remaining):
                ctx.stderr.write("mc listen: timed out\n")
                return EXIT_ERROR
        return EXIT_OK
    finally:
        server.shutdown()
        server.server_close()
