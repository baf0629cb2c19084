"""Fixtures for the service tests: one server per test module (see ``serve_harness.py``).

Module scope because starting uvicorn costs ~50 ms and the first use of each key a
~50 ms scrypt; tests that need other settings start their own with ``live_server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_harness import Live, live_server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The module's server: FakeGenerator, memory off (tests that need it say so)."""
    with live_server(tmp_path_factory.mktemp("serve"), memory=False) as server:
        yield server
