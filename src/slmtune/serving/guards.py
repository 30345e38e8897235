"""ASGI middleware around the app: one log line per request, the API key, and the body's size and time limits.

Each answers a refused request itself, before the app (and the model) see it, and none ever sends a
traceback: an unforeseen error becomes a plain 500 with a one-line log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from slmtune.errors import debug_enabled
from slmtune.serving.metrics import ServerMetrics
from slmtune.serving.responses import send_error

log = logging.getLogger("slmtune.serve")
CLIENT_CLOSED = 499  # nginx's code for a client that left before the answer; logged, never sent
OPEN_PATHS = ("/healthz", "/")  # the key is never asked for these: a health probe, and the page that asks for it
BODY_METHODS = (b"POST", b"PUT", b"PATCH")


class AccessLog:
    """Logs method, path, status and duration of every request (never its body or headers); counts it."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), CLIENT_CLOSED

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as err:
            if debug_enabled():
                log.exception("unforeseen error")
            else:
                log.error("unforeseen error: %s: %s", type(err).__name__, str(err)[:200])
            if status == CLIENT_CLOSED:
                status = 500
                await send_error(send, 500, "the server failed to answer this request; see its log", "server_error")
        finally:
            seconds = time.perf_counter() - started
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000)
            self.metrics.request(scope["path"], scope["method"], status, seconds)


class ApiKeyGuard:
    """With a key set, every route but the open ones needs `Authorization: Bearer <key>` (constant-time check)."""

    def __init__(self, app, api_key: str | None):
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope, receive, send):
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return await self.app(scope, receive, send)
        message = "wrong API key" if given else "missing API key: send the header `Authorization: Bearer <key>`"
        await send_error(send, 401, message, "invalid_api_key", [(b"www-authenticate", b"Bearer")])


class BodyGuard:
    """Reads a request's whole body before the app does: at most `max_bytes`, within `timeout_s`.

    A body declared or found too large gets 413 without being read to its end; one that is still
    arriving after `timeout_s` (a slow or stalled client) gets 408; one cut off by the client gets nothing.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"].encode() not in BODY_METHODS:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await send_error(send, 400, "Content-Length is not a number", "bad_content_length")
            if int(declared) > self.max_bytes:
                return await self._too_large(send, f"declares {int(declared)} bytes")
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                return await send_error(
                    send,
                    408,
                    f"the request body did not arrive within serve.body_timeout_s={self.timeout_s:g} s",
                    "body_timeout",
                )
            if message["type"] == "http.disconnect":
                return  # the client left mid-body: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._too_large(send, "is larger")
            if not message.get("more_body", False):
                break
        await self.app(_as_json(scope), _replay(bytes(body), receive), send)

    async def _too_large(self, send, what: str) -> None:
        await send_error(
            send,
            413,
            f"the request body {what} than serve.max_body_bytes={self.max_bytes} bytes allow",
            "body_too_large",
        )


def _as_json(scope):
    """Every body this API takes is JSON: read it as JSON whatever Content-Type the client sent (curl -d)."""
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the client's later messages (disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
