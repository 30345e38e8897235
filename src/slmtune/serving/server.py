"""`slmtune serve`: load the model once, then serve the app with uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from pathlib import Path

from slmtune.config import ServeConfig
from slmtune.errors import SlmtuneError

API_KEY_ENV = "SLMTUNE_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reach_note(host: str, api_key: str | None) -> str:
    """What the bind address means for who can reach the server, said at start."""
    if is_loopback(host):
        return f"bound to {host}: only this machine can reach it (--host 0.0.0.0 serves the network)"
    if api_key:
        return f"bound to {host}: reachable from the network; every route but /healthz and / needs the API key"
    return (
        f"WARNING: bound to {host} with no API key: anyone who can reach this machine can use the model; "
        f"give --api-key (or {API_KEY_ENV})"
    )


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log = logging.getLogger("slmtune.serve")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def serve(
    model_path: Path,
    settings: ServeConfig,
    api_key: str | None,
    name: str | None,
    batch_size: int,
    adapters: dict[str, Path] | None = None,
) -> None:
    """Load `model_path`, then serve it on settings.host:settings.port until told to stop."""
    import uvicorn

    from slmtune.serving.app import create_app
    from slmtune.serving.engine import load_served_model

    if api_key is not None and not api_key.strip():
        raise SlmtuneError(f"the API key is empty; give a non-empty --api-key (or {API_KEY_ENV}), or none")
    configure_logging()
    log = logging.getLogger("slmtune.serve")
    model = load_served_model(model_path, batch_size, adapters, name or "")
    app = create_app(model, settings, api_key)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # AccessLog writes one line per request, without query strings or headers
        log_level="warning",
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    for variant in model.variants.values():
        what = variant.kind if variant.task.generative else f"{variant.kind}, {len(variant.task.labels)} labels"
        log.info("model %r: %s (%s, %s)", variant.name, model_path, what, model.runtime)
    log.info("serving at http://%s:%d", settings.host, settings.port)
    log.info(reach_note(settings.host, api_key))
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        # uvicorn handles the signal (a graceful stop), then raises it again for the handler it found: this one,
        # so that a requested stop ends with status 0 and this log line, not with death by signal
        signal.signal(signum, lambda number, frame: received.append(number))
    try:
        server.run()
    finally:
        model.close()
    if not server.started:
        raise SlmtuneError(f"could not listen on {settings.host}:{settings.port} (in use? see the lines above)")
    names = ", ".join(signal.Signals(number).name for number in received)
    log.info("stopped%s", f" ({names}): the requests in flight were finished" if names else "")
