"""One ``pelago serve --demo`` per test worker, shared by the tests that run curl against it.

tests/test_readme_tour.py and tests/test_docs_examples.py both need a real
demo server; starting one (a process, its database migrated and seeded) is
most of what each cost. The session fixture ``demo_servers`` starts it once
per worker (pytest-xdist: each worker is a session) and stops it at the end.

The README tour shows the demo's ids as a reader sees them on a fresh server
(``# 201 {"id": 9, …}``), so it asks for a *pristine* server: one no test has
used. The docs' examples read their ids from the server and run on a used
one. ``tests/conftest.py`` orders the tour before the docs' examples, so on a
worker that runs both, the tour has the fresh server and the examples reuse
it; in any other order a second server is started, never a used one for the
tour.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoServer:
    """A running ``pelago serve --demo``: its URL, the demo admin's key, the environment it runs with."""

    base: str
    key: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    used: bool = False

    def log(self) -> str:
        """What the server printed (its banner and request log), for a failure's message."""
        return "".join(self.output[-200:])


def start_demo(directory: Path) -> DemoServer:
    """Start a demo server with its instance in ``directory``; returns once it listens."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "PELAGO_PLUGINS")}
    env.update(PELAGO_INSTANCE_DIR=str(directory / "instance"), PELAGO_EMBEDDED_SCHEDULER="0")
    pelago = Path(sys.executable).with_name("pelago")
    process = subprocess.Popen([str(pelago), "serve", "--demo", "--port", str(port)], env=env, cwd=directory,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    key, banner = None, []
    for line in process.stdout:  # the banner comes before the server listens
        banner.append(line)
        if "admin key:" in line:
            key = line.split("admin key:", 1)[1].split()[0]
        if "Running on" in line:
            break
    if not key:
        process.terminate()
        process.wait(timeout=30)
        raise AssertionError("the demo server did not start:\n" + "".join(banner))
    server = DemoServer(f"http://127.0.0.1:{port}", key, env, process, banner)
    # Keep reading what it prints: a full pipe would block the server mid-request.
    threading.Thread(target=lambda: server.output.extend(process.stdout or ()), daemon=True).start()
    return server


class DemoServers:
    """The worker's demo servers: the running one, handed out again unless a test needs a fresh one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[DemoServer] = []

    def get(self, *, pristine: bool = False) -> DemoServer:
        """The running server, or a new one when there is none (or ``pristine`` and it has been used)."""
        current = self.started[-1] if self.started else None
        if current is None or current.process.poll() is not None or (pristine and current.used):
            current = start_demo(self._new_directory())
            self.started.append(current)
        current.used = True
        return current

    def _new_directory(self) -> Path:
        path = self.directory / f"demo{len(self.started)}"
        path.mkdir()
        return path

    def stop(self) -> None:
        for server in self.started:
            server.process.terminate()
            server.process.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServers]:
    servers = DemoServers(tmp_path_factory.mktemp("demo"))
    yield servers
    servers.stop()
