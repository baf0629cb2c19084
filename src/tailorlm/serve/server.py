"""Running the app under uvicorn: in the foreground (the CLI) or in a thread (tests, benchmarks).

:func:`run_in_thread` binds the socket itself (port 0: the kernel picks a free port, so
parallel test runs never race for one) and waits until uvicorn reports it is serving,
rather than sleeping, before handing out the URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["run_in_thread", "serve_forever"]


@contextlib.contextmanager
def run_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` in a daemon thread; yields ``http://host:port``."""
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; with proto 0 every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tailorlm-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on port {port} did not start within {timeout_s} s")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()


def serve_forever(app: Any, *, host: str, port: int) -> None:
    """Serve in the foreground until Ctrl-C (what ``tailorlm serve`` runs)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
