"""Error bodies in OpenAI's shape, `{"error": {"message", "type", "code"}}`, for the app and its middleware."""

from __future__ import annotations

import json

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


def error_payload(status: int, message: str, code: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"), "code": code}}


def error_bytes(status: int, message: str, code: str) -> bytes:
    return json.dumps(error_payload(status, message, code)).encode("utf-8")


async def send_error(send, status: int, message: str, code: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer a raw ASGI request with an error body (used before the app sees the request)."""
    body = error_bytes(status, message, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
