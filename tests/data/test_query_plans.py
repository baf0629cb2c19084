"""The per-user reads every request makes use an index on both stores (issue 15: the query plans).

A personalized request reads one user's documents (oldest first, before the query time) and
interactions; at millions of stored rows a plan that scans the table is what makes p99 grow
with the store instead of with the user. The plans are read with EXPLAIN on the real SQLite
and PostgreSQL; on PostgreSQL sequential scans are disabled for the check, so it asks whether
an index *can* serve the read (on a tiny table the planner would rightly prefer a scan).
"""

from __future__ import annotations

from sqlalchemy import text

from tailorlm.data import Document, Interaction, Store
from tailorlm.data import _queries as queries
from tailorlm.data import _tables as t


def _fill(store: Store) -> None:
    recs: list = []
    for u in range(30):
        for k in range(20):
            ts = 1000 + k
            recs.append(Document(user_id=f"u{u}", doc_kind="review", text=f"review {u} {k}", timestamp=ts))
            recs.append(Interaction(user_id=f"u{u}", item_id=f"i{k}", interaction="rating", value=4.0, timestamp=ts))
    store.add(recs)


def _plan(store: Store, stmt) -> str:  # type: ignore[no-untyped-def]
    compiled = stmt.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).fetchall()
            return "\n".join(str(r[-1]) for r in rows)
        conn.execute(text("SET enable_seqscan = off"))
        return "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")).fetchall())


def test_per_user_reads_are_index_reads(store: Store) -> None:
    _fill(store)
    docs = queries.documents_query(
        [t.documents.c.doc_id, t.documents.c.text, t.documents.c.timestamp],
        user_id="u7", doc_kind="review", before=1010, exclude_ids=["x"], limit=None,
    )  # fmt: skip
    inter = queries.interactions_query(user_id="u7", interaction="rating", before=1010)
    for stmt, table in ((docs, "documents"), (inter, "interactions")):
        plan = _plan(store, stmt)
        if store.engine.dialect.name == "sqlite":
            assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan or "USING COVERING INDEX" in plan, plan
            assert f"SCAN {table}" not in plan, plan
        else:
            assert "Index" in plan and "Seq Scan" not in plan, plan
