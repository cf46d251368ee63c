"""The real app served by uvicorn on a free loopback port, in a thread, for tests that need real HTTP;
and a champion model and batch folder kept inside the test's own directory (never the repository's var/)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

START_TIMEOUT_SECONDS = 30.0


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` (lifespan included) until the block ends; yields its base URL."""
    # Bind first and hand the socket to uvicorn: no window in which another process can take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def champion_in(models_dir: Path) -> Callable[[sa.Engine], None]:
    """A `prepare` callback: train from the store and promote through maker-checker, artifacts in models_dir."""

    def prepare(engine: sa.Engine) -> None:
        from training.config import load_config
        from training.datasets import from_store
        from training.pipeline import train_pipeline
        from training.registry import Registry

        cfg = load_config()
        trained = train_pipeline(from_store(engine=engine, config=cfg), cfg, models_dir.parent / "trained",
                                 operator="test-analyst", write_report=False)
        registry = Registry(engine, models_dir)
        model_id = registry.register(trained.out_dir, "test-analyst").id
        registry.request_promotion(model_id, "champion", "test-analyst", "test champion")
        registry.approve(model_id, "test-approver", "second person")

    return prepare


@contextlib.contextmanager
def private_batch_dir(directory: Path) -> Iterator[None]:
    """Batch job outputs of apps started inside the block go to `directory`."""
    from tests.conftest import settings_env

    with settings_env(batch_dir=str(directory)):
        yield
