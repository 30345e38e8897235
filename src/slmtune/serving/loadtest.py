"""`python -m slmtune.serving.loadtest` (`make loadtest`): the server under concurrent clients, against offline.

It measures the model's offline `classify --input` speed (the same code, model loaded), then starts
`slmtune serve` on 127.0.0.1 and drives it with 1, 4 and 16 concurrent clients (an asyncio client
on httpx), each level for a bounded time and request count, one phrase per request: requests/s,
phrases/s, p50/p95/p99 latency and errors. Results go to bench/serve.json and a section of
bench/README.md (or to --json alone).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slmtune.errors import SlmtuneError, add_debug_flag, exit_on_failure

MAX_REQUESTS_PER_LEVEL = 200_000  # a bound on every level, whatever its duration
READY_TIMEOUT_S = 180
BENCH_FOLDER = Path(".slmtune-cache/loadtest-bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parse = argparse.ArgumentParser(prog="python -m slmtune.serving.loadtest", description=__doc__)
    add_debug_flag(parse)
    which = parse.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-path", type=Path, help="a classification model folder (int4 ONNX or PyTorch)")
    which.add_argument("--bench-model", action="store_true", help="the bench model's int4 build (~200M, built once)")
    parse.add_argument("--phrases", type=Path, help="jsonl with a 'phrase' field (default: the model's test split)")
    parse.add_argument("--clients", default="1,4,16", help="concurrency levels, comma-separated")
    parse.add_argument("--duration", type=float, default=60.0, help="seconds per level")
    parse.add_argument("--offline-phrases", type=int, default=256, help="phrases timed offline")
    parse.add_argument("--out", type=Path, help="write serve.json and a README section into this folder")
    parse.add_argument("--json", type=Path, help="write the results to this file only")
    args = parse.parse_args(argv)
    if args.out is None and args.json is None:
        parse.error("give --out FOLDER (bench/) or --json FILE")
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def read_phrases(path: Path) -> list[str]:
    from slmtune.data import read_jsonl

    phrases = [row["phrase"] for row in read_jsonl(path) if isinstance(row.get("phrase"), str)]
    if not phrases:
        raise SlmtuneError(f"{path}: no rows with a 'phrase' field to send")
    return phrases


def bench_model() -> tuple[Path, Path]:
    """The bench model (`model=bench_phi3`) built to int4 once into .slmtune-cache, and its test split."""
    from slmtune.bench.models import Workspace, build, prepare_base
    from slmtune.config import compose

    workspace = Workspace(BENCH_FOLDER)
    int4 = workspace.folder("onnx_int4")
    if not (int4 / "genai_config.json").is_file():
        params = compose(["model=bench_phi3"])
        print("[loadtest] building the bench model's int4 folder (once) ...", file=sys.stderr)
        prepare_base(workspace, params)
        workspace.merged.parent.mkdir(parents=True, exist_ok=True)
        if workspace.merged.exists():
            import shutil

            shutil.rmtree(workspace.merged)
        workspace.base.rename(workspace.merged)  # the random base stands for a merged model
        build(workspace, params, "int4")
    return int4, workspace.data / "test.jsonl"


def offline_speed(folder: Path, phrases: list[str]) -> dict[str, Any]:
    """`slmtune classify --input`'s speed: the same loader and scoring, model loaded, timed over `phrases`."""
    from slmtune.config import compose
    from slmtune.scoring import load_classifier, predict

    settings = compose().eval
    classifier = load_classifier(folder, batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens)
    predict(classifier, phrases[:4])  # warm-up
    started = time.perf_counter()
    predict(classifier, phrases)
    seconds = time.perf_counter() - started
    del classifier
    gc.collect()
    return {"phrases": len(phrases), "seconds": round(seconds, 3), "phrases_per_s": round(len(phrases) / seconds, 2)}


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once the server at `url` answers /healthz; a SlmtuneError (with its log's end) if it exits or is late."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SlmtuneError(f"the server exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SlmtuneError(f"the server did not answer /healthz within {timeout:g} s: {log.read_text()[-3000:]}")


class Server:
    """`slmtune serve` in a child process on a free 127.0.0.1 port, its log in a file."""

    def __init__(self, folder: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "slmtune.cli", "serve", "--model-path", str(folder), "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"))

    def wait_ready(self) -> None:
        wait_healthy(self.url, self.process, self.log)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


async def drive(url: str, phrases: list[str], clients: int, duration: float) -> dict[str, Any]:
    """`clients` concurrent loops posting one phrase per request for `duration` seconds."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        stop_at = time.monotonic() + duration

        async def loop(worker: int) -> None:
            nonlocal sent
            index = worker
            while time.monotonic() < stop_at and sent < MAX_REQUESTS_PER_LEVEL:
                sent += 1
                phrase = phrases[index % len(phrases)]
                index += clients
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json={"input": phrase})
                    ok = response.status_code == 200 and len(response.json()["data"]) == 1
                    problem = None if ok else f"status {response.status_code}"
                except (httpx.HTTPError, ValueError, KeyError) as err:
                    problem = type(err).__name__
                if problem is None:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[problem] = errors.get(problem, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(worker) for worker in range(clients)))
        wall = time.perf_counter() - started
    done = len(latencies)
    ms = [1000 * s for s in latencies] or [0.0]
    return {
        "clients": clients,
        "duration_s": round(wall, 2),
        "requests": done + sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_s": round(done / wall, 2),
        "phrases_per_s": round(done / wall, 2),  # one phrase per request
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p95": round(percentile(ms, 95), 2),
            "p99": round(percentile(ms, 99), 2),
            "mean": round(statistics.fmean(ms), 2),
        },
    }


def batch_counts(url: str) -> tuple[float, float]:
    """The server's own count of model calls and of the phrases they scored so far (its Prometheus metrics)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    figures = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name in ("slmtune_batch_size_count", "slmtune_batch_size_sum"):
                figures[sample.name] = sample.value
    return figures.get("slmtune_batch_size_count", 0.0), figures.get("slmtune_batch_size_sum", 0.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from slmtune.bench.run import machine
    from slmtune.prompts import Task

    folder, test_split = bench_model() if args.bench_model else (args.model_path, None)
    task = Task.load(folder)
    if task.generative:
        raise SlmtuneError(f"{folder}: a generation model; the load test drives /v1/classify (a classifier)")
    phrases_file = args.phrases or test_split or Path("data/prepared/test.jsonl")
    phrases = read_phrases(phrases_file)
    levels = [int(c) for c in args.clients.split(",")]
    started = time.perf_counter()
    offline = offline_speed(folder, (phrases * (1 + args.offline_phrases // len(phrases)))[: args.offline_phrases])
    print(f"[loadtest] offline classify: {offline['phrases_per_s']} phrases/s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="slmtune-loadtest-") as tmp:
        server = Server(folder, Path(tmp) / "server.log")
        try:
            server.wait_ready()
            asyncio.run(drive(server.url, phrases, 1, min(2.0, args.duration)))  # warm-up, not counted
            results = []
            for clients in levels:
                calls_before, phrases_before = batch_counts(server.url)
                level = asyncio.run(drive(server.url, phrases, clients, args.duration))
                calls, scored = (
                    now - before
                    for now, before in zip(batch_counts(server.url), (calls_before, phrases_before), strict=True)
                )
                level["server"] = {"model_calls": int(calls), "mean_batch": round(scored / max(calls, 1), 2)}
                results.append(level)
                print(
                    f"[loadtest] {clients:>2} clients: {level['phrases_per_s']} phrases/s, "
                    f"p50 {level['latency_ms']['p50']} ms, p99 {level['latency_ms']['p99']} ms, "
                    f"{level['errors']} errors",
                    file=sys.stderr,
                )
        finally:
            exit_code = server.stop()
            log = server.log.read_text(errors="replace")
    top = results[-1]
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "model": {
            "folder": str(folder),
            "name": "the bench model (model=bench_phi3, random weights)" if args.bench_model else str(folder),
            "kind": task.kind,
            "labels": task.labels,
            "runtime": "onnxruntime-genai" if (folder / "genai_config.json").is_file() else "pytorch",
        },
        "phrases_file": str(phrases_file),
        "settings": {"duration_s": args.duration, "clients": levels, "phrases_per_request": 1},
        "offline": offline,
        "levels": results,
        "ratio_top_vs_offline": round(top["phrases_per_s"] / offline["phrases_per_s"], 3),
        "server": {"exit_code": exit_code, "tracebacks_in_log": log.count("Traceback")},
    }


def readme_section(results: dict[str, Any]) -> str:
    rows = [
        f"| {level['clients']} | {level['requests_per_s']} | {level['phrases_per_s']} | {level['latency_ms']['p50']} | "
        f"{level['latency_ms']['p95']} | {level['latency_ms']['p99']} | {level['errors']} | "
        f"{level['server']['mean_batch']} |"
        for level in results["levels"]
    ]
    offline = results["offline"]
    return "\n".join(
        [
            "## Serving under load",
            "",
            f"`make loadtest` ({results['created']}): `slmtune serve` on {results['model']['name']} "
            f"({results['model']['runtime']}), {results['settings']['duration_s']:g} s per level, one phrase per "
            "request, clients on the same 2-core machine.",
            "",
            "| clients | requests/s | phrases/s | p50 ms | p95 ms | p99 ms | errors | phrases per model call |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Offline `classify --input` in the same run: {offline['phrases_per_s']} phrases/s "
            f"({offline['phrases']} phrases). Served at {results['levels'][-1]['clients']} clients: "
            f"**{results['ratio_top_vs_offline']}x** offline.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    from slmtune.environment import go_offline

    go_offline()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)

    def load_test() -> None:
        from slmtune.atomic import atomic_write_text

        results = run(args)
        text = json.dumps(results, indent=2) + "\n"
        if args.json is not None:
            atomic_write_text(args.json, text)
        if args.out is not None:
            from slmtune.bench.report import replace_section

            atomic_write_text(args.out / "serve.json", text)
            replace_section(args.out / "README.md", "serve", readme_section(results))
        errors = sum(level["errors"] for level in results["levels"])
        print(f"[loadtest] done: {errors} errors; served/offline {results['ratio_top_vs_offline']}x", file=sys.stderr)

    exit_on_failure(load_test, "loadtest: error: ", "loadtest: ")


if __name__ == "__main__":
    main()
