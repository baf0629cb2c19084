"""The tailorlm HTTP service: OpenAI-compatible personalized chat, REST for user data, the workbench.

Routes (all under ``/v1`` need ``Authorization: Bearer <key>``):

- ``GET /v1/models``, ``POST /v1/chat/completions`` (OpenAI-compatible; ``model`` =
  ``tailorlm/<method spec>`` personalizes for ``user``; extension field ``tailorlm``);
- ``/v1/users``: users, documents, interactions, preferences, JSONL upload, export,
  delete, facts (list, forget), ``compare`` and ``overview`` for the workbench;
- ``/v1/keys``: admin-only user-scoped keys;
- ``GET /health`` and the workbench page at ``/`` (no auth, no user data).

Start it with ``tailorlm serve`` or ``uvicorn --factory tailorlm.serve:create_app``.
"""

from tailorlm.serve.app import create_app
from tailorlm.serve.auth import KeyStore, Principal, new_api_key
from tailorlm.serve.server import run_in_thread

__all__ = ["KeyStore", "Principal", "create_app", "new_api_key", "run_in_thread"]
