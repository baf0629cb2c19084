"""What a user's deletion must also reach outside the store: the caches CLI runs keep.

Why: ``Store.delete_user`` removes the user's rows, vectors and files in one transaction,
but two files in ``cache_dir`` are written by CLI runs and outlive it. The embedding cache
holds a vector of every text a run embedded (the user's documents and facts, and queries,
which the store never keeps); the training queue's per-user jobs name the user and keep
their configs and error texts. Both the service's ``DELETE /v1/users/{id}`` and ``tailorlm
data delete-user`` call :func:`forget_user_caches` after the store's deletion. A queue kept
elsewhere (``--queue-file``) or a benchmark's own work folder is not known here.
"""

from __future__ import annotations

from pathlib import Path

from tailorlm.eval.cache import EMBEDDING_CACHE_FILE, clear_vectors
from tailorlm.personalize.training.queue import DEFAULT_QUEUE_FILE, TrainQueue

__all__ = ["forget_user_caches"]


def forget_user_caches(cache_dir: str | Path, user_id: str) -> dict[str, int]:
    """Purge ``user_id`` from the caches in ``cache_dir``: entries removed per cache (a cache
    that does not exist is not created, and not reported)."""
    removed: dict[str, int] = {}
    vectors = Path(cache_dir) / EMBEDDING_CACHE_FILE
    if vectors.is_file():
        removed["embedding_cache"] = clear_vectors(vectors)
    queue_file = Path(cache_dir) / DEFAULT_QUEUE_FILE
    if queue_file.is_file():
        queue = TrainQueue(queue_file)
        try:
            removed["train_queue"] = queue.forget_user(user_id)
        finally:
            queue.close()
    return removed
