"""Hostile requests: each gets its 4xx and a clear message, then a good request succeeds, on the same process."""

from __future__ import annotations

import json

import httpx
import pytest

from serving import API_KEY, ServerProcess
from test_serve import LIMITS, post_head, raw_request

pytestmark = pytest.mark.slow
LONG = " ".join(["tomorrow"] * 3000)

# (name, method, path, JSON body or raw bytes, headers, status, words the message must hold)
CASES = [
    ("no key", "GET", "/v1/models", None, {"Authorization": ""}, 401, "missing API key"),
    ("wrong key", "GET", "/v1/models", None, {"Authorization": "Bearer nope"}, 401, "wrong API key"),
    ("empty bearer", "GET", "/metrics", None, {"Authorization": "Bearer"}, 401, "wrong API key"),
    ("basic auth", "GET", "/v1/models", None, {"Authorization": "Basic dTpw"}, 401, "wrong API key"),
    ("key on classify", "POST", "/v1/classify", {"input": "hi"}, {"Authorization": "Bearer x"}, 401, "wrong API key"),
    ("malformed JSON", "POST", "/v1/classify", b'{"input": ', {}, 400, "not valid JSON"),
    ("not JSON", "POST", "/v1/classify", b"hello there", {}, 400, "not valid JSON"),
    ("array body", "POST", "/v1/classify", [1, 2], {}, 422, "valid dictionary"),
    ("no input", "POST", "/v1/classify", {}, {}, 422, "input: Field required"),
    ("number input", "POST", "/v1/classify", {"input": 5}, {}, 422, "input"),
    ("list of numbers", "POST", "/v1/classify", {"input": [1, 2]}, {}, 422, "input"),
    ("empty phrase", "POST", "/v1/classify", {"input": ""}, {}, 422, "input is empty"),
    ("blank phrase", "POST", "/v1/classify", {"input": " \n\t"}, {}, 422, "input is empty"),
    ("empty list", "POST", "/v1/classify", {"input": []}, {}, 422, "empty list"),
    ("empty element", "POST", "/v1/classify", {"input": ["ok", ""]}, {}, 422, "input[1] is empty"),
    ("too many phrases", "POST", "/v1/classify", {"input": ["a"] * 65}, {}, 422, "serve.max_phrases=64"),
    ("unknown field", "POST", "/v1/classify", {"input": "a", "temperature": 1}, {}, 422, "Extra inputs"),
    ("scores not bool", "POST", "/v1/classify", {"input": "a", "scores": "yes"}, {}, 422, "scores"),
    ("phrase over context", "POST", "/v1/classify", {"input": LONG}, {}, 422, "model's context holds"),
    ("long one of many", "POST", "/v1/classify", {"input": ["ok", LONG]}, {}, 422, "input[1] is"),
    ("10 MB body", "POST", "/v1/classify", b"x" * 10_000_000, {}, 413, "serve.max_body_bytes=262144"),
    ("other model", "POST", "/v1/classify", {"input": "a", "model": "gpt-9"}, {}, 404, "not served here"),
    ("unknown route", "GET", "/v1/completions", None, {}, 404, "no route /v1/completions"),
    ("wrong method", "GET", "/v1/classify", None, {}, 405, "GET is not allowed"),
    ("no messages", "POST", "/v1/chat/completions", {"messages": []}, {}, 422, "messages"),
    (
        "unknown role",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {},
        422,
        "messages.0.role",
    ),
    (
        "no user turn",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "system", "content": "hi"}]},
        {},
        422,
        "role 'user'",
    ),
    (
        "content not text",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": 3}]},
        {},
        422,
        "content",
    ),
    (
        "max_tokens over cap",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000},
        {},
        422,
        "serve.max_tokens=64",
    ),
    (
        "max_tokens zero",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        {},
        422,
        "from 1 to",
    ),
    (
        "hot temperature",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 5},
        {},
        422,
        "temperature is 5",
    ),
    (
        "two choices",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "n": 2},
        {},
        422,
        "n=1",
    ),
    (
        "chat over context",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": LONG}]},
        {},
        422,
        "context holds",
    ),
]


def send(server: ServerProcess, method: str, path: str, body, headers: dict) -> httpx.Response:
    merged = {**server.headers, **headers}
    merged = {k: v for k, v in merged.items() if v}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if isinstance(body, bytes):
            return client.request(method, path, content=body, headers={**merged, "Content-Type": "application/json"})
        return (
            client.request(method, path, json=body, headers=merged)
            if body is not None
            else client.request(method, path, headers=merged)
        )


def check_error(status: int, payload: dict, expected_status: int, words: str, name: str) -> None:
    assert status == expected_status, (name, status, payload)
    error = payload["error"]
    assert set(error) == {"message", "type", "code"}, name
    assert words in error["message"], (name, error["message"])
    assert "Traceback" not in json.dumps(payload) and 'File "' not in json.dumps(payload), name


@pytest.fixture(scope="module")
def server(pipeline_run, tmp_path_factory):
    server = ServerProcess(pipeline_run / "models/int4", tmp_path_factory.mktemp("hostile") / "server.log", *LIMITS)
    yield server
    server.stop()


def test_hostile_requests_get_their_4xx_and_the_server_lives_on(server):
    for name, method, path, body, headers, status, words in CASES:
        response = send(server, method, path, body, headers)
        check_error(response.status_code, response.json(), status, words, name)

    # at the socket: a body that declares too much, a slow one, a chunked flood, a bad length, one cut off
    declared = raw_request(server.port, post_head("/v1/classify", 50_000_000), [])
    assert declared.startswith(b"HTTP/1.1 413") and b"declares 50000000 bytes" in declared
    slow = raw_request(server.port, post_head("/v1/classify", 100), [b'{"input": '], pause=0.1)
    assert slow.startswith(b"HTTP/1.1 408") and b"serve.body_timeout_s=1.5" in slow
    chunked_head = post_head("/v1/classify", 0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    flood = raw_request(server.port, chunked_head, [chunk] * 8)
    assert flood.startswith(b"HTTP/1.1 413") and b"is larger" in flood
    bad_length = raw_request(server.port, post_head("/v1/classify", "ten"), [])
    assert bad_length.startswith(b"HTTP/1.1 400")
    assert b"Traceback" not in declared + slow + flood + bad_length
    raw_request(server.port, post_head("/v1/classify", 100), [b'{"input": "cut'], close_early=True)
    wrong_key = raw_request(server.port, post_head("/v1/classify", 2, key="guess"), [b"{}"])
    assert wrong_key.startswith(b"HTTP/1.1 401")

    good = send(server, "POST", "/v1/classify", {"input": "what a wonderful surprise"}, {})
    assert good.status_code == 200 and good.json()["data"][0]["label"] in ("sad", "joy", "fear", "surprise")
    assert server.process.poll() is None  # the same process answered everything
    log = server.log_text()
    assert "Traceback" not in log and "unforeseen" not in log and API_KEY not in log
    assert len(CASES) + 7 >= 25
