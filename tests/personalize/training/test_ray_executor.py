"""Ray as the queue's executor, on a local Ray (num_cpus=2): jobs complete through actors,
failures are recorded, a worker killed mid-job is restarted and the job retried, a stopped
driver's rerun skips finished jobs, and real LoRA adapters trained by Ray workers equal the
in-process executor's (same keys, metadata, steps and weights)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.adapters import AdapterRegistry
from tailorlm.data import Store
from tailorlm.personalize.registry import register_trainer
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.queue import TrainQueue

ray = pytest.importorskip("ray")

from tailorlm.personalize.training.ray_executor import RayExecutor, SettingsContext  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray per module; workers import this module (the test trainer) from HERE."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},
    )
    yield
    ray.shutdown()


def _logged_trainer(job: TrainJob, ctx: TrainContext):
    """A trainer that logs every call (across processes) and can kill its worker once."""
    with Path(job.config["log"]).open("a") as f:
        f.write(f"{job.owner}\n")
    kill = job.config.get("kill_once")
    if kill and not Path(kill).exists():
        Path(kill).touch()
        os._exit(1)  # the worker process dies mid-job, as on an OOM kill
    if job.config.get("fail"):
        raise RuntimeError(f"boom for {job.owner}")
    time.sleep(float(job.config.get("sleep", 0.0)))  # a job that takes a while, to kill a driver during
    key = job.key()
    folder = ctx.registry.folder_for(key)
    (folder / "weights.bin").write_bytes(job.owner.encode())
    return ctx.registry.register(key, folder, {"steps": 1, "users": ctx.users, "pid": os.getpid()})


register_trainer("raylog", _logged_trainer)


def _fake_context(url: str) -> TrainContext:
    """A worker context without a model: the logged trainer needs only the store and registry."""
    store = Store(url)
    return TrainContext(store=store, registry=AdapterRegistry(store, base_model="m"), generator=None)  # type: ignore[arg-type]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TrainContext, RayExecutor, Path]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    executor = RayExecutor(functools.partial(_fake_context, url), workers=2, threads_per_worker=1)
    return _fake_context(url), executor, tmp_path / "calls.log"


def _calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_jobs_complete_through_ray_and_failures_are_recorded(ray_cluster, setup) -> None:
    ctx, executor, log = setup
    queue = TrainQueue(log.parent / "q.sqlite")
    owners = ["a", "b", "c", "d"]
    queue.add([TrainJob("raylog", "user", u, "t", {"log": str(log)}) for u in owners])
    queue.add([TrainJob("raylog", "user", "x", "t", {"log": str(log), "fail": True})])
    queue.add([TrainJob("nosuch", "user", "y", "t")])

    def per_job(qj, i, n):  # the CLI sets each job's population this way; it must travel with the job
        ctx.users = [qj.job.owner, "pop"]

    assert queue.run(ctx, executor=executor, progress=per_job) == {"pending": 0, "running": 0, "done": 4, "failed": 2}
    errors = {q.job.owner: q.error for q in queue.jobs("failed")}
    assert "boom for x" in errors["x"] and "no trainer for method 'nosuch'" in errors["y"]
    records = {r.key.owner: r for r in ctx.registry.list()}
    assert sorted(records) == owners and _calls(log) == Counter({**dict.fromkeys(owners, 1), "x": 1})
    assert {q.adapter for q in queue.jobs("done")} == {r.name for r in records.values()}
    assert all(r.meta["users"] == [u, "pop"] for u, r in records.items())
    assert len({r.meta["pid"] for r in records.values()}) == 2  # both workers took jobs
    assert all(r.meta["pid"] != os.getpid() for r in records.values())


def test_a_killed_worker_is_restarted_and_its_job_retried(ray_cluster, setup) -> None:
    ctx, executor, log = setup
    queue = TrainQueue(log.parent / "q.sqlite")
    marker = log.parent / "killed"
    queue.add([TrainJob("raylog", "user", u, "t", {"log": str(log)}) for u in ("a", "b")])
    queue.add([TrainJob("raylog", "user", "k", "t", {"log": str(log), "kill_once": str(marker)})])
    assert queue.run(ctx, executor=executor)["done"] == 3
    assert marker.exists()
    assert _calls(log) == Counter({"a": 1, "b": 1, "k": 2})  # only the killed job ran twice


def test_a_stopped_driver_resumes_without_redoing_finished_jobs(ray_cluster, setup) -> None:
    ctx, executor, log = setup
    path = log.parent / "q.sqlite"
    queue = TrainQueue(path)
    owners = [f"u{i}" for i in range(6)]
    jobs = [TrainJob("raylog", "user", u, "t", {"log": str(log)}) for u in owners]
    queue.add(jobs)

    def ctrl_c_at_job_4(qj, i, n):
        if i == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        queue.run(ctx, executor=executor, progress=ctrl_c_at_job_4)
    finished = {q.job.owner for q in queue.jobs("done")}
    counts = queue.counts()
    assert counts["running"] == 0 and counts["done"] == len(finished) >= 1  # in-flight jobs went back to pending
    queue._set(queue.jobs("pending")[-1].id, "running")  # and one as a killed driver leaves it
    queue.close()

    again = TrainQueue(path)
    again.add(jobs)  # a rerun queues the same jobs: a no-op
    assert again.run(ctx, executor=RayExecutor(executor.make_context, workers=2))["done"] == 6
    calls = _calls(log)
    assert all(calls[u] == 1 for u in finished)  # nothing finished was trained again
    assert set(calls) == set(owners)
    assert {r.key.owner for r in ctx.registry.list()} == set(owners)


_DRIVER = """
import functools, sys
sys.path.insert(0, {here!r})
import ray
import test_ray_executor as t
from tailorlm.personalize.training.jobs import TrainJob
from tailorlm.personalize.training.queue import TrainQueue
from tailorlm.personalize.training.ray_executor import RayExecutor

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={{"env_vars": {{"PYTHONPATH": {here!r}}}}})
queue = TrainQueue({queue!r})
queue.add([TrainJob("raylog", "user", f"u{{i}}", "t", {{"log": {log!r}, "sleep": 1.0}}) for i in range(8)])
executor = RayExecutor(functools.partial(t._fake_context, {url!r}), workers=2, threads_per_worker=1)
queue.run(t._fake_context({url!r}), executor=executor)
"""


def test_a_driver_killed_with_sigkill_resumes_without_redoing_finished_jobs(ray_cluster, setup) -> None:
    """A real ``kill -9`` of the driver process (its own local Ray with it), then a rerun."""
    ctx, executor, log = setup
    path, url = log.parent / "q.sqlite", str(ctx.store.engine.url)
    script = _DRIVER.format(here=str(HERE), queue=str(path), log=str(log), url=url)
    driver = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 180
    finished: set[str] = set()
    while time.monotonic() < deadline and driver.poll() is None:
        if path.exists():
            peek = TrainQueue(path)
            finished = {q.job.owner for q in peek.jobs("done")}
            peek.close()
            if len(finished) >= 2:
                break
        time.sleep(0.2)
    assert driver.poll() is None, f"the driver ended before it could be killed: {driver.stderr.read()[-2000:]!r}"
    assert len(finished) >= 2, "no job finished within 180 s"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(30)
    queue = TrainQueue(path)
    done_before = {q.job.owner for q in queue.jobs("done")}
    assert done_before >= finished and len(done_before) < 8
    assert queue.run(ctx, executor=executor)["done"] == 8
    calls = _calls(log)
    assert all(calls[u] == 1 for u in done_before)  # nothing finished was trained again
    assert {r.key.owner for r in ctx.registry.list()} == {f"u{i}" for i in range(8)}


TASK = "amazon-title"
TINY = {"r": 4, "dropout": 0.0, "max_length": 64, "batch_size": 2, "steps": 2, "lr": 5e-3}


def _examples() -> list:
    from tailorlm.data import Document, TaskExample

    recs: list = []
    for u, word in (("alice", "Bright"), ("bob", "Solid"), ("carol", "Warm")):
        for i in range(3):
            text = f"These worked well on my guitar, number {i}."
            recs.append(Document(user_id=u, doc_kind="review", text=text, title=f"{word} {i}", timestamp=100 + i))
            recs.append(
                TaskExample(
                    task=TASK, example_id=f"{u}{i}", user_id=u, input=text, target=f"{word} {i}", timestamp=100 + i
                )
            )
    return recs


def _train(path: Path, ctx: TrainContext, executor=None) -> list:
    queue = TrainQueue(path / "q.sqlite")
    queue.add([TrainJob("lora", "user", u, TASK, TINY) for u in ("alice", "bob", "carol")])
    queue.add([TrainJob("lora", "global", "", TASK, TINY)])
    assert queue.run(ctx, executor=executor)["done"] == 4, queue.jobs("failed")
    return sorted(ctx.registry.list(), key=lambda r: r.key.encode())


def _learned(meta: dict) -> dict:
    """Metadata without wall-clock facts (timings, timestamps): those differ; what was learned must not."""
    return {k: v for k, v in meta.items() if not k.endswith(("seconds", "_at"))}


def _weights(record) -> dict:
    from safetensors.torch import load_file

    return load_file(str(record.path / "adapter_model.safetensors"))


@pytest.mark.model
def test_ray_adapters_equal_the_local_executors(ray_cluster, smollm, tmp_path: Path) -> None:
    import torch

    from tailorlm.models.base import model_fingerprint
    from tailorlm.settings import default_cache_dir, load_settings

    local_store = Store(f"sqlite:///{tmp_path / 'local.db'}", files_dir=tmp_path / "local-files")
    local_store.add(_examples())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker: the same kernels, hence the same floats
    try:
        local_ctx = TrainContext(
            local_store, AdapterRegistry(local_store, base_model=model_fingerprint(smollm)), smollm
        )
        local = _train(tmp_path / "local", local_ctx)
    finally:
        torch.set_num_threads(threads)

    url = f"sqlite:///{tmp_path / 'ray.db'}"
    ray_store = Store(url, files_dir=tmp_path / "ray-files")
    ray_store.add(_examples())
    settings = load_settings(cache_dir=default_cache_dir(), generator={"model": "smollm2", "dtype": "float32"})
    make = SettingsContext(settings, store_url=url, files_dir=str(tmp_path / "ray-files"))
    driver_ctx = TrainContext(ray_store, AdapterRegistry(ray_store, base_model=model_fingerprint(smollm)), None)  # type: ignore[arg-type]
    remote = _train(tmp_path / "ray", driver_ctx, RayExecutor(make, workers=2, threads_per_worker=1))

    assert [r.key for r in remote] == [r.key for r in local] and len(local) == 4
    for a, b in zip(local, remote, strict=True):
        assert a.base_model == b.base_model and a.manifest and b.manifest
        assert _learned(a.manifest) == _learned(b.manifest) and _learned(a.meta) == _learned(b.meta)
        wa, wb = _weights(a), _weights(b)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.name == b.name  # names hash the weights: identical files, identical names


def test_the_cli_checks_the_executor_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from typer.testing import CliRunner

    from tailorlm.cli import app
    from tailorlm.errors import ConfigError
    from tailorlm.personalize.training.ray_executor import import_ray

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    runner = CliRunner()
    queue = ["train", "queue", "--task", "amazon-title"]
    bad = runner.invoke(app, [*queue, "--executor", "dask"])
    assert bad.exit_code == 2 and "--executor must be 'local' or 'ray'" in bad.output
    assert runner.invoke(app, [*queue, "--address", "auto"]).exit_code == 2  # --address needs --executor ray
    zero = runner.invoke(app, [*queue, "--executor", "ray", "--workers", "0"])
    assert zero.exit_code == 2 and "workers must be >= 1" in zero.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'tailorlm\[ray\]'"):
        import_ray()
    missing = runner.invoke(app, [*queue, "--executor", "ray"])
    assert missing.exit_code == 2 and "tailorlm[ray]" in missing.output
