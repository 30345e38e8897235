"""`slmtune serve`: the API, the official `openai` client, metrics, batching and shutdown, on real servers.

The servers are real processes on 127.0.0.1 serving the pipeline's own int4 models: the tone
classifier (pipeline_run) and the embedded generative task (generation_runs' home_commands).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import run_module, sh
from serving import API_KEY, ServerProcess

pytestmark = pytest.mark.slow
# Small limits, so that the hostile-request test reaches each of them quickly.
LIMITS = ["serve.body_timeout_s=1.5", "serve.max_phrases=64", "serve.max_tokens=64", "serve.max_body_bytes=262144"]


@pytest.fixture(scope="module")
def tone_server(pipeline_run, tmp_path_factory):
    server = ServerProcess(pipeline_run / "models/int4", tmp_path_factory.mktemp("serve") / "tone.log", *LIMITS)
    yield server
    assert server.stop() == 0, server.log_text()[-2000:]


@pytest.fixture(scope="module")
def home_server(generation_runs, tmp_path_factory):
    folder = generation_runs["home_commands"] / "models/int4"
    server = ServerProcess(folder, tmp_path_factory.mktemp("serve") / "home.log", *LIMITS)
    yield server
    assert server.stop() == 0, server.log_text()[-2000:]


def test_health_is_open_and_everything_else_needs_the_key(tone_server):
    assert httpx.get(tone_server.url + "/healthz").json() == {"status": "ok"}
    assert "<title>slmtune</title>" in httpx.get(tone_server.url + "/").text  # the page asks for the key itself
    refused = httpx.get(tone_server.url + "/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    with tone_server.client() as client:
        models = client.get("/v1/models").json()
    assert models["object"] == "list"
    [card] = models["data"]
    assert card["id"] == "int4" and card["object"] == "model" and card["kind"] == "classification"
    assert card["labels"] == ["sad", "joy", "fear", "surprise"] and card["max_model_len"] > 0


def test_classify_agrees_with_the_command_line_on_every_test_phrase(tone_server, pipeline_run, tmp_path):
    test_split = pipeline_run / "data/prepared/test.jsonl"
    out = tmp_path / "scored.jsonl"
    sh(["slmtune", "classify", "--input", str(test_split), "--output", str(out), "--scores"], pipeline_run)
    offline = [json.loads(line) for line in out.read_text().splitlines()]
    phrases = [row["phrase"] for row in offline]
    served = []
    with tone_server.client() as client:
        for start in range(0, len(phrases), 64):
            answer = client.post("/v1/classify", json={"input": phrases[start : start + 64], "scores": True})
            assert answer.status_code == 200, answer.text
            served += answer.json()["data"]
    assert len(served) == len(offline) > 100
    assert [row["label"] for row in served] == [row["prediction"] for row in offline]
    worst = max(abs(s["scores"][k] - o["scores"][k]) for s, o in zip(served, offline, strict=True) for k in o["scores"])
    assert worst <= 1e-4
    with tone_server.client() as client:
        one = client.post("/v1/classify", json={"input": phrases[0]}).json()
    assert one["data"] == [{"index": 0, "label": offline[0]["prediction"]}] and one["model"] == "int4"


def test_the_openai_client_gets_a_label_from_a_classifier(tone_server, pipeline_run):
    from openai import OpenAI

    client = OpenAI(base_url=tone_server.url + "/v1", api_key=API_KEY)
    phrase = "I can't believe they threw me a party, I had no idea!"
    with tone_server.client() as http:
        expected = http.post("/v1/classify", json={"input": phrase}).json()["data"][0]["label"]
    answer = client.chat.completions.create(model="int4", messages=[{"role": "user", "content": phrase}])
    assert answer.choices[0].message.content == expected and answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens >= 1
    stream = client.chat.completions.create(model="int4", messages=[{"role": "user", "content": phrase}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == expected


def test_the_openai_client_streams_a_generated_answer(home_server, generation_runs):
    from openai import OpenAI

    project = generation_runs["home_commands"]
    request = "switch off the bedroom fan at 10 pm"
    cli = sh(["slmtune", "generate", request, "--model-path", "models/int4", "--max-new-tokens", "64"], project)
    client = OpenAI(base_url=home_server.url + "/v1", api_key=API_KEY)
    messages = [{"role": "user", "content": request}]
    whole = client.chat.completions.create(model="int4", messages=messages, max_tokens=64)
    text = whole.choices[0].message.content
    assert text == cli.stdout.strip() and json.loads(text)["device"]  # the task's JSON, as the command line gives it
    chunks = client.chat.completions.create(
        model="int4", messages=messages, max_tokens=64, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in chunks:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    assert len(pieces) > 3 and "".join(pieces).strip() == text
    assert usage.completion_tokens == whole.usage.completion_tokens and usage.prompt_tokens > 0
    short = client.chat.completions.create(model="int4", messages=messages, max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens <= 3


async def _classify_together(url: str, phrases: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/classify", json={"input": p}) for p in phrases))
    return [answer.status_code for answer in answers]


def metric_samples(server: ServerProcess) -> dict[str, float]:
    with server.client() as client:
        text = client.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_requests_that_arrive_together_are_computed_together(tone_server, pipeline_run):
    phrases = [json.loads(line)["phrase"] for line in (pipeline_run / "data/prepared/test.jsonl").open()][:48]
    before = metric_samples(tone_server)
    assert asyncio.run(_classify_together(tone_server.url, phrases)) == [200] * 48
    after = metric_samples(tone_server)
    calls = after["slmtune_batch_size_count"] - before.get("slmtune_batch_size_count", 0)
    phrases_scored = after["slmtune_batch_size_sum"] - before.get("slmtune_batch_size_sum", 0)
    assert phrases_scored == 48 and calls < 48  # fewer model calls than requests: batched
    key = "slmtune_requests_total{method=POST,route=/v1/classify,status=200}"
    assert after[key] - before.get(key, 0) == 48
    assert after["slmtune_phrases_total"] >= 48
    assert after["slmtune_request_duration_seconds_count{route=/v1/classify}"] >= 48


def test_each_request_is_logged_in_one_line_without_its_body(tone_server):
    secret = "a phrase that must never reach the log"
    with tone_server.client() as client:
        assert client.post("/v1/classify", json={"input": secret}).status_code == 200
    time.sleep(0.2)
    lines = [line for line in tone_server.log_text().splitlines() if "POST /v1/classify 200" in line]
    assert lines and lines[-1].rstrip().endswith("ms")
    assert secret not in tone_server.log_text() and API_KEY not in tone_server.log_text()
    assert "bound to 127.0.0.1: only this machine can reach it" in tone_server.log_text()


def raw_request(port: int, head: bytes, body_parts: list[bytes], pause: float = 0.0, close_early=False) -> bytes:
    """Send a request over a bare socket (head, then the body parts with a pause between); what came back.

    A server may answer (a 413, say) and close before the whole body is sent: sending stops there.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                time.sleep(pause)
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server has stopped reading: its answer is waiting to be read
        if close_early:
            return b""
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def post_head(path: str, length: int | str, key: str = API_KEY) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def test_sigterm_lets_the_request_in_flight_finish(pipeline_run, tmp_path):
    server = ServerProcess(pipeline_run / "models/int4", tmp_path / "server.log")
    body = json.dumps({"input": "what a lovely morning"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post_head("/v1/classify", len(body)) + body[:10])
        time.sleep(0.5)
        server.process.terminate()  # SIGTERM while the request is still arriving
        time.sleep(0.5)
        sock.sendall(body[10:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["data"][0]["label"] in ("sad", "joy", "fear", "surprise")
    assert server.process.wait(timeout=60) == 0
    assert "stopped" in server.log_text() and "Traceback" not in server.log_text()


def test_a_phrase_longer_than_the_context_is_refused_before_any_model_call(pipeline_run):
    long_phrase = " ".join(["tomorrow"] * 3000)
    for folder in ("models/int4", "models/merged"):  # the command in this process (its start-up is not the test)
        result = run_module(["-m", "slmtune.cli", "classify", long_phrase, "--model-path", folder], pipeline_run)
        assert result.returncode == 1, result.stdout
        assert "tokens with the prompt and the longest label" in result.stderr and "holds" in result.stderr
        assert "unexpected error" not in result.stderr and result.stdout == ""


def loadtest(args: list[str], cwd: Path) -> dict:
    out = cwd / "serve.json"
    sh(["python", "-m", "slmtune.serving.loadtest", *args, "--json", str(out)], cwd, timeout=600)
    return json.loads(out.read_text())


def test_the_load_test_drives_1_4_and_16_clients_without_an_error(pipeline_run, tmp_path):
    phrases = str(pipeline_run / "data/prepared/test.jsonl")
    args = ["--model-path", str(pipeline_run / "models/int4"), "--phrases", phrases, "--duration", "1.5"]
    results = loadtest([*args, "--offline-phrases", "64"], tmp_path)
    assert [level["clients"] for level in results["levels"]] == [1, 4, 16]
    for level in results["levels"]:
        assert level["errors"] == 0 and level["requests"] > 0 and level["phrases_per_s"] > 0
        assert level["latency_ms"]["p50"] <= level["latency_ms"]["p95"] <= level["latency_ms"]["p99"]
    assert results["levels"][-1]["server"]["mean_batch"] > 1  # 16 clients share model calls
    assert results["offline"]["phrases_per_s"] > 0 and results["ratio_top_vs_offline"] > 0
    assert results["server"] == {"exit_code": 0, "tracebacks_in_log": 0}
