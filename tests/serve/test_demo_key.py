"""`make demo` prints a fresh admin key every run without disturbing other admin keys."""

from __future__ import annotations

from pathlib import Path

from tailorlm.data import Store
from tailorlm.demo import demo_admin_key
from tailorlm.serve import KeyStore


def test_each_demo_run_gets_a_working_key_and_revokes_only_the_previous_demo_key(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    keys = KeyStore(store, cache_ttl_s=0)
    first_start = keys.ensure_admin()
    assert first_start is not None

    first = demo_admin_key(store)
    second = demo_admin_key(store)
    assert first != second
    assert keys.verify(second) is not None and keys.verify(second).is_admin
    assert keys.verify(first) is None  # the previous demo key no longer works
    assert keys.verify(first_start) is not None  # the operator's own admin key is untouched
    active = [k for k in keys.list_keys() if k.revoked_at is None]
    assert len(active) == 2
