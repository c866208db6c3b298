"""A tiny webhook receiver: verifies each delivery's signature and prints its event (DESIGN §11).

Subscribe it (an admin; the secret is shown once), then run it with that secret:

    curl -X POST http://127.0.0.1:5000/api/v1/webhooks -H "Authorization: Bearer $TOKEN" \\
         -H 'Content-Type: application/json' \\
         -d '{"url": "http://127.0.0.1:8000/hook", "events": ["order.created", "order.status_changed"]}'
    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 8000

(a target on 127.0.0.1 needs MYAPI_WEBHOOK_ALLOW_PRIVATE=true on the server and its workers.)

Each verified event is printed as one JSON line on stdout and answered 204;
a delivery whose signature does not verify (or is older than 5 minutes) is
answered 400 and printed to stderr. Deliveries are at least once: the same
event may come twice (a worker died after sending it), always with the same
``webhook-id``, so this receiver prints each id once. Verification is the
``standardwebhooks`` library's (pip install standardwebhooks), the same that
signs. During a secret rotation the server signs with both secrets for 24 h:
switch WEBHOOK_SECRET to the new one whenever convenient within them.
"""

import argparse
import contextlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024

parser = argparse.ArgumentParser(description="Receive, verify and print webhook events.")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
args = parser.parse_args()
secret = os.environ.get("WEBHOOK_SECRET")
if not secret:
    sys.exit("set WEBHOOK_SECRET to the subscription's secret (whsec_...)")
verifier = Webhook(secret)
seen: set[str] = set()
seen_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.answer(413)
        body = self.rfile.read(length)
        try:
            event = verifier.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as error:
            print(f"refused a delivery: {error}", file=sys.stderr, flush=True)
            return self.answer(400)
        with seen_lock:
            first = event["id"] not in seen
            seen.add(event["id"])
        if first:  # a repeat (at least once) is acknowledged again, not processed again
            print(json.dumps(event), flush=True)
        return self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):  # stdout carries the events only
        pass


server = ThreadingHTTPServer((args.host, args.port), Handler)
print(f"listening on http://{args.host}:{server.server_port}/", file=sys.stderr, flush=True)
with contextlib.suppress(KeyboardInterrupt):
    server.serve_forever()
