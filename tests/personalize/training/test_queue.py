"""The resumable training queue: done jobs are never retrained after a restart, failures are
recorded with their error and do not stop the batch, and bad jobs are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.adapters import AdapterRegistry
from tailorlm.data import Store
from tailorlm.personalize.registry import get_trainer, register_trainer
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.queue import TrainQueue

CALLS: list[str] = []


def _copy_trainer(job: TrainJob, ctx: TrainContext):
    """A real (if trivial) trainer plugin: writes its 'weights' and registers them."""
    CALLS.append(job.owner)
    if job.config.get("fail"):
        raise RuntimeError(f"boom for {job.owner}")
    key = job.key()
    folder = ctx.registry.folder_for(key)
    (folder / "weights.bin").write_bytes(job.owner.encode())
    return ctx.registry.register(key, folder, {"steps": 1})


register_trainer("copytest", _copy_trainer)


@pytest.fixture
def ctx(tmp_path: Path) -> TrainContext:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    return TrainContext(store=store, registry=AdapterRegistry(store, base_model="m"), generator=None)  # type: ignore[arg-type]


def test_queue_resumes_without_retraining_done_jobs(ctx: TrainContext, tmp_path: Path) -> None:
    CALLS.clear()
    path = tmp_path / "q.sqlite"
    jobs = [TrainJob("copytest", "user", u, "t") for u in ("a", "b", "c")]
    queue = TrainQueue(path)
    queue.add(jobs)
    assert queue.run(ctx, limit=1) == {"pending": 2, "running": 0, "done": 1, "failed": 0}
    # simulate a kill while "b" was running: its state says running
    queue._set(queue.jobs()[1].id, "running")
    queue.close()

    again = TrainQueue(path)  # a restart
    again.add(jobs)  # re-adding is a no-op
    assert len(again.jobs()) == 3
    seen: list[str] = []
    counts = again.run(ctx, progress=lambda qj, i, n: seen.append(qj.job.owner))
    assert counts["done"] == 3 and seen == ["b", "c"]
    assert CALLS == ["a", "b", "c"]  # "a" was never trained twice
    assert {q.adapter for q in again.jobs()} == {r.name for r in ctx.registry.list()}
    assert again.run(ctx)["done"] == 3 and CALLS == ["a", "b", "c"]


def test_failures_are_recorded_and_do_not_stop_the_batch(ctx: TrainContext, tmp_path: Path) -> None:
    CALLS.clear()
    queue = TrainQueue(tmp_path / "q.sqlite")
    queue.add([TrainJob("copytest", "user", "x", "t", {"fail": True}), TrainJob("copytest", "user", "y", "t")])
    assert queue.run(ctx) == {"pending": 0, "running": 0, "done": 1, "failed": 1}
    (failed,) = queue.jobs("failed")
    assert failed.job.owner == "x" and "boom for x" in (failed.error or "")
    queue.run(ctx)
    assert CALLS == ["x", "y"]  # failed jobs are not retried unless asked
    queue.run(ctx, retry_failed=True)
    assert CALLS == ["x", "y", "x"]


def test_bad_jobs_and_unknown_trainers_are_named() -> None:
    with pytest.raises(ValueError, match="scope must be one of"):
        TrainJob("lora", "team", "x", "t")
    with pytest.raises(ValueError, match="owner is required for scope 'user'"):
        TrainJob("lora", "user", "", "t")
    with pytest.raises(ValueError, match="owner must be '' for scope 'global'"):
        TrainJob("lora", "global", "u", "t")
    with pytest.raises(KeyError, match="no trainer for method 'nosuch'"):
        get_trainer("nosuch")
    job = TrainJob("lora", "user", "u", "t", {"steps": 2})
    assert TrainJob.from_dict(job.to_dict()) == job


def test_long_prompts_lose_their_middle_not_the_instruction_or_the_assistant_header() -> None:
    from tailorlm.personalize.training.data import trim_middle

    ids = list(range(100))
    kept = trim_middle(ids, 20)
    assert len(kept) == 20
    assert kept[:5] == [0, 1, 2, 3, 4]  # the start: system message and instruction
    assert kept[-15:] == list(range(85, 100))  # the end: the question and the assistant header
    assert trim_middle(ids, 200) == ids


def test_persona_members_come_from_the_population_only(tmp_path) -> None:
    from tailorlm.data import Store, User
    from tailorlm.personalize.training.data import persona_members

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add([User(user_id=f"u{i}", gender="woman" if i % 2 else "man") for i in range(6)])
    assert persona_members(store, "gender=woman", ["u0", "u1", "u2", "u3"]) == ["u1", "u3"]  # not u5
    with pytest.raises(ValueError, match="no members in the population"):
        persona_members(store, "gender=other", ["u0", "u1"])
    with pytest.raises(ValueError, match="is not 'attribute=value'"):
        persona_members(store, "women", ["u0"])
