"""API keys: an admin key and user-scoped keys, stored as salted scrypt hashes.

A key reads ``tlm_<key_id>_<secret>``. ``key_id`` (16 hex digits) is public and finds
the row; only ``scrypt(secret, salt)`` is stored, so a copy of the database does not
hand out working keys. scrypt costs ~50 ms (and 16 MiB), far too much for every request,
so keys that verified are remembered in memory (by the SHA-256 of the whole key). A
remembered key is trusted for ``cache_ttl_s`` seconds, then its row is read again (one
indexed read, not another scrypt: a key's secret never changes, only whether it is
active): revoking a key here drops it at once, and other replicas of the service stop
accepting it within the TTL.

A :class:`Principal` is what a request is allowed to do: everything (admin) or one
user's data (user). The check lives in one function, :func:`authorize`, called by
every route that takes a ``user_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from tailorlm.data import Store
from tailorlm.data import _tables as t
from tailorlm.serve.errors import ApiError

__all__ = ["KeyInfo", "KeyStore", "Principal", "authorize", "new_api_key", "parse_api_key"]

Role = Literal["admin", "user"]
_KEY = re.compile(r"^tlm_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}
_CACHE_MAX = 10_000


def new_api_key() -> str:
    """A fresh key: 64 random bits of public id and 256 random bits of secret."""
    return f"tlm_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def parse_api_key(key: str) -> tuple[str, str] | None:
    """``(key_id, secret)``, or None when ``key`` does not have the key format."""
    m = _KEY.match(key)
    return (m.group(1), m.group(2)) if m else None


def _hash(secret: str, salt_hex: str) -> str:
    return hashlib.scrypt(secret.encode("utf-8"), salt=bytes.fromhex(salt_hex), **_SCRYPT).hex()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its role, and for a user key the one user it may touch."""

    key_id: str
    role: Role
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_access(self, user_id: str) -> bool:
        return self.is_admin or self.user_id == user_id


def authorize(principal: Principal, user_id: str) -> None:
    """Raise 403 unless ``principal`` may read and write ``user_id``'s data.

    Checked before the user's existence, so a user key learns nothing about other
    users, not even whether they exist.
    """
    if not principal.can_access(user_id):
        raise ApiError(
            403,
            f"this API key is scoped to user {principal.user_id!r} and cannot access user {user_id!r}",
            param="user_id",
        )


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "this route needs the admin key; user-scoped keys cannot use it")


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed to the admin: never the secret, never the hash."""

    key_id: str
    role: Role
    user_id: str | None
    label: str | None
    created_at: int
    revoked_at: int | None


class KeyStore:
    """Creates, verifies and revokes keys in the store's ``api_keys`` table (schema v2)."""

    def __init__(self, store: Store, *, cache_ttl_s: float = 60.0, shared: bool = False) -> None:
        """``shared``: other processes (``serve --workers N``) may revoke or delete keys, so a
        cached verification is trusted only after the key's row is confirmed active (one
        indexed read instead of a scrypt); otherwise a revocation elsewhere would keep
        working here until the cache entry expired."""
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.shared = shared
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()
        # One scrypt per key at a time (when a cached key expires, every client's next request
        # would otherwise verify it at once), and all of them on one thread: each allocates
        # 16 MiB, and glibc keeps such a block in the arena of the thread that freed it, so
        # scrypt on every request thread left up to 16 x 16 MiB resident (the soak benchmark's
        # RSS grew 2.8x).
        self._verifying: dict[str, threading.Lock] = {}
        self._scrypt = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailorlm-scrypt")

    # -- creating --------------------------------------------------------------------

    def create(
        self, *, role: Role, user_id: str | None = None, label: str | None = None, key: str | None = None
    ) -> str:
        """Store the hash of a new key (or of ``key``) and return the key, the only time it is seen."""
        if role == "user" and not user_id:
            raise ValueError("a user-scoped key needs a user_id")
        if role == "admin" and user_id is not None:
            raise ValueError("an admin key has no user_id")
        key = key or new_api_key()
        parsed = parse_api_key(key)
        if parsed is None:
            raise ValueError("an API key must look like tlm_<16 hex digits>_<32+ url-safe characters>")
        key_id, secret = parsed
        salt = secrets.token_hex(16)
        row = {
            "key_id": key_id,
            "role": role,
            "user_id": user_id,
            "salt": salt,
            "hash": _hash(secret, salt),
            "label": label,
            "created_at": int(time.time()),
            "revoked_at": None,
        }
        with self.store.engine.begin() as conn:
            conn.execute(t.api_keys.insert().values(**row))
        return key

    def ensure_admin(self, key: str | None = None) -> str | None:
        """Make sure an admin key exists; return a newly generated key, or None.

        With ``key`` (tests, deployments that manage their own secret) that key is
        registered if it is not already; otherwise a key is generated only when no
        active admin key exists, so it is shown once, on first start.
        """
        if key is not None:
            parsed = parse_api_key(key)
            if parsed is None:
                raise ValueError("admin_key must look like tlm_<16 hex digits>_<32+ url-safe characters>")
            if self._row(parsed[0]) is None:
                self.create(role="admin", key=key, label="admin")
            elif self.verify(key) is None:
                raise ValueError("admin_key's id is already registered with another secret, or revoked")
            return None
        if self.has_active_admin():
            return None
        return self.create(role="admin", label="admin (first start)")

    def rotate_admin(self) -> str:
        """Revoke every admin key and return a new one (for a lost admin key)."""
        c = t.api_keys.c
        with self.store.engine.begin() as conn:
            conn.execute(
                t.api_keys.update().where(c.role == "admin", c.revoked_at.is_(None)).values(revoked_at=int(time.time()))
            )
        self._clear_cache()
        return self.create(role="admin", label="admin (rotated)")

    # -- verifying -------------------------------------------------------------------

    def cached(self, key: str) -> Principal | None:
        """The fast path: a key verified before (no scrypt). Its row is read again when its
        TTL has passed, and on every request when ``shared``; a key no longer active is
        dropped and refused."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is None:
                return None
            self._cache.move_to_end(digest)
        expired = hit[1] < time.monotonic()
        if (expired or self.shared) and not self._active(hit[0].key_id):
            self._drop_cached(lambda p: p.key_id == hit[0].key_id)
            return None
        if expired:
            with self._lock:
                if digest in self._cache:
                    self._cache[digest] = (hit[0], time.monotonic() + self.cache_ttl_s)
        return hit[0]

    def verify(self, key: str) -> Principal | None:
        """The principal for ``key``, or None if it is malformed, unknown, wrong or revoked.

        Concurrent calls for the same key wait for the first one and take its cached answer."""
        if (hit := self.cached(key)) is not None:
            return hit
        parsed = parse_api_key(key)
        if parsed is None:
            return None
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        with self._lock:
            gate = self._verifying.setdefault(digest, threading.Lock())
        try:
            with gate:
                if (hit := self.cached(key)) is not None:
                    return hit
                return self._verify(digest, *parsed)
        finally:
            with self._lock:
                if not gate.locked():
                    self._verifying.pop(digest, None)

    def _verify(self, digest: str, key_id: str, secret: str) -> Principal | None:
        row = self._row(key_id)
        if row is None or row["revoked_at"] is not None:
            return None
        computed = self._scrypt.submit(_hash, secret, row["salt"]).result()
        matches = hmac.compare_digest(computed, row["hash"])
        if not matches:
            return None
        principal = Principal(key_id=key_id, role=row["role"], user_id=row["user_id"])
        with self._lock:
            self._cache[digest] = (principal, time.monotonic() + self.cache_ttl_s)
            while len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return principal

    # -- listing and revoking ------------------------------------------------------------

    def list_keys(self, *, user_id: str | None = None) -> list[KeyInfo]:
        c = t.api_keys.c
        q = select(c.key_id, c.role, c.user_id, c.label, c.created_at, c.revoked_at).order_by(c.created_at, c.key_id)
        if user_id is not None:
            q = q.where(c.user_id == user_id)
        with self.store.engine.connect() as conn:
            return [KeyInfo(**r) for r in conn.execute(q).mappings()]

    def has_active_admin(self) -> bool:
        c = t.api_keys.c
        q = select(c.key_id).where(c.role == "admin", c.revoked_at.is_(None)).limit(1)
        with self.store.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def revoke(self, key_id: str) -> bool:
        c = t.api_keys.c
        with self.store.engine.begin() as conn:
            res = conn.execute(
                t.api_keys.update()
                .where(c.key_id == key_id, c.revoked_at.is_(None))
                .values(revoked_at=int(time.time()))
            )
        self._drop_cached(lambda p: p.key_id == key_id)
        return res.rowcount > 0

    def delete_for_user(self, user_id: str) -> int:
        """Remove a deleted user's keys (they name the user, so they go with the user)."""
        with self.store.engine.begin() as conn:
            n = conn.execute(t.api_keys.delete().where(t.api_keys.c.user_id == user_id)).rowcount
        self._drop_cached(lambda p: p.user_id == user_id)
        return n

    def _active(self, key_id: str) -> bool:
        c = t.api_keys.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(c.revoked_at).where(c.key_id == key_id)).first()
        return row is not None and row[0] is None

    def _row(self, key_id: str) -> dict | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_id == key_id)).mappings().first()
        return dict(row) if row else None

    def _drop_cached(self, match) -> None:
        with self._lock:
            for digest in [d for d, (p, _) in self._cache.items() if match(p)]:
                del self._cache[digest]

    def _clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
