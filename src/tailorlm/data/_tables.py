"""SQLAlchemy Core tables: one metadata object for SQLite and PostgreSQL alike.

Every user-owned table carries ``user_id`` as the first primary-key column, so
request-path queries are ``WHERE user_id = ?`` index scans and the schema can be
sharded by user without cross-user joins. Timestamps are Unix seconds.

What this module leaves out: creating and upgrading the tables (``_migrations``) and
every query (``store`` and its private helpers).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

from tailorlm.data.records import USER_ATTRIBUTES

metadata = MetaData()

_ID = String(256)


def _user_fk() -> ForeignKey:
    return ForeignKey("users.user_id", ondelete="CASCADE")


meta = Table(
    "tailorlm_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# How each typed user attribute is stored; which attributes there are, and in what
# order, is records.USER_ATTRIBUTES (the one list). A change there must come here too,
# with a migration, so a drift fails at import rather than at the first insert.
_USER_ATTRIBUTE_TYPES: dict[str, TypeEngine[object] | type[TypeEngine[object]]] = {
    "age": Integer,
    "age_band": String(64),
    "gender": String(64),
    "occupation": Text,
    "location": Text,
}
if tuple(_USER_ATTRIBUTE_TYPES) != USER_ATTRIBUTES:
    raise RuntimeError(
        f"users table columns {tuple(_USER_ATTRIBUTE_TYPES)} differ from records.USER_ATTRIBUTES "
        f"{USER_ATTRIBUTES}; update _tables._USER_ATTRIBUTE_TYPES (and add a migration)"
    )

users = Table(
    "users",
    metadata,
    Column("user_id", _ID, primary_key=True),
    Column("name", Text),
    *(Column(name, _USER_ATTRIBUTE_TYPES[name]) for name in USER_ATTRIBUTES),
    Column("attributes", JSON, nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("item_id", _ID, primary_key=True),
    Column("title", Text),
    Column("text", Text),
    Column("attributes", JSON, nullable=False),
)

documents = Table(
    "documents",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("doc_id", _ID, primary_key=True),
    Column("doc_kind", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("title", Text),
    Column("rating", Float),
    Column("item_id", _ID),
    Column("timestamp", BigInteger),
    Column("metadata", JSON, nullable=False),
    Column("source", String(128)),
    Index("ix_documents_user_ts", "user_id", "timestamp"),
)

interactions = Table(
    "interactions",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("interaction_id", _ID, primary_key=True),
    Column("item_id", _ID, nullable=False),
    Column("interaction", String(32), nullable=False),
    Column("value", Float),
    Column("timestamp", BigInteger),
    Column("metadata", JSON, nullable=False),
    Column("source", String(128)),
    Index("ix_interactions_user_ts", "user_id", "timestamp"),
    Index("ix_interactions_item", "item_id"),
)

preferences = Table(
    "preferences",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("pref_id", _ID, primary_key=True),
    Column("prompt", Text, nullable=False),
    Column("chosen", Text, nullable=False),
    Column("rejected", Text, nullable=False),
    Column("dimension", String(128)),
    Column("pref_source", String(128)),
    Column("timestamp", BigInteger),
    Column("source", String(128)),
)

examples = Table(
    "examples",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("task", String(128), primary_key=True),
    Column("example_id", _ID, primary_key=True),
    Column("input", Text, nullable=False),
    Column("target", Text),
    Column("doc_id", _ID),
    Column("timestamp", BigInteger),
    Column("metadata", JSON, nullable=False),
    Column("source", String(128)),
    Index("ix_examples_task", "task"),
)

embedding_models = Table(
    "embedding_models",
    metadata,
    Column("model", String(256), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("version", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("model", String(256), ForeignKey("embedding_models.model"), primary_key=True),
    Column("doc_id", _ID, primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("text_hash", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Derived artifacts at any granularity: scope 'user' (owner = user_id), 'persona'
# (owner = persona id) or 'global' (owner = ''). Files (adapters) sit at ``path``.
artifacts = Table(
    "artifacts",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("owner", _ID, primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("payload", JSON, nullable=False),
    Column("path", Text),
    Column("model", String(256)),
    Column("model_version", String(128)),
    Column("created_at", BigInteger, nullable=False),
)

# Training provenance (schema version 3): one row per (derived artifact, user whose data it was
# built over). ``subject`` is a keyed hash of the user id (HMAC-SHA256 with the store's
# ``provenance_key`` in ``tailorlm_meta``), never the id itself, so a deletion leaves no clear
# id behind. ``examples``: that user's rows the artifact learned from (0: in the population
# it was fitted over, e.g. for persona clustering, but none of their rows were learned).
# ``deleted_at``: set by ``delete_user`` when a user with examples > 0 is deleted, which
# marks the artifact stale until it is rebuilt (``tailorlm train retrain-stale``). Not a
# user table and no foreign key: the rows outlive the user on purpose, as the stale marker.
artifact_users = Table(
    "artifact_users",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("owner", _ID, primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("examples", Integer, nullable=False),
    Column("deleted_at", BigInteger),
    Index("ix_artifact_users_subject", "subject"),
    Index("ix_artifact_users_deleted", "deleted_at"),
)

facts = Table(
    "facts",
    metadata,
    Column("user_id", _ID, _user_fk(), primary_key=True),
    Column("fact_id", _ID, primary_key=True),
    Column("text", Text, nullable=False),
    Column("valid_from", BigInteger, nullable=False),
    Column("valid_to", BigInteger),
    Column("fact_source", String(128)),
    Column("model", String(256)),
    Column("model_version", String(128)),
    Column("metadata", JSON, nullable=False),
)

loads = Table(
    "loads",
    metadata,
    Column("load_id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64)),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=False),
    Column("records", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("counts", JSON, nullable=False),
)

# API keys of the HTTP service (schema version 2). Only a salted scrypt hash of each
# key's secret is stored; ``key_id`` is the public part of the key, used to find the row.
# Not a user table: keys are credentials, never exported; the service deletes a user's
# keys together with the user. No foreign key, so a key can exist before the user's data.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("role", String(16), nullable=False),  # 'admin' | 'user'
    Column("user_id", _ID),  # the only user a 'user' key may touch; NULL for admin keys
    Column("salt", String(64), nullable=False),
    Column("hash", String(128), nullable=False),
    Column("label", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Index("ix_api_keys_user", "user_id"),
)

# The version of each user's history (schema version 4): a number that changes, in the same
# transaction, with every insert, update or delete of the user's documents, interactions or
# facts (database triggers: ``_versions``), so a process may keep what it derived from the
# user's rows (``UserCache``) until it does. The row ``user_id = ''`` versions the item
# catalogue, which interaction histories quote. Not a user table: not exported; a deletion
# removes the user's row last. No foreign key: triggers write it before the user row exists.
user_versions = Table(
    "user_versions",
    metadata,
    Column("user_id", _ID, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# Tables whose rows belong to one user (deleted and exported per user).
USER_TABLES = (documents, interactions, preferences, examples, embeddings, facts)
