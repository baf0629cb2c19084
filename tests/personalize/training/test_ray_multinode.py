"""Ray across nodes: the executor joins an existing cluster by address and its workers run on
different nodes. The cluster is two Ray nodes (two raylets, two object stores, one CPU each)
on this machine, as Ray's own multi-node tests build them (``ray.cluster_utils.Cluster``);
every node reaches the same store, as workers on several machines reach one PostgreSQL."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.adapters import AdapterRegistry
from tailorlm.data import Store
from tailorlm.personalize.registry import register_trainer
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.queue import TrainQueue

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from tailorlm.personalize.training.ray_executor import RayExecutor  # noqa: E402

HERE = Path(__file__).resolve().parent


def _node_trainer(job: TrainJob, ctx: TrainContext):
    """Registers an adapter that says which Ray node and process trained it."""
    key = job.key()
    folder = ctx.registry.folder_for(key)
    (folder / "weights.bin").write_bytes(job.owner.encode())
    meta = {"steps": 1, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    return ctx.registry.register(key, folder, meta)


register_trainer("raynode", _node_trainer)


def _context(url: str) -> TrainContext:
    store = Store(url)
    return TrainContext(store=store, registry=AdapterRegistry(store, base_model="m"), generator=None)  # type: ignore[arg-type]


@pytest.fixture
def two_nodes() -> Iterator[Cluster]:
    if ray.is_initialized():  # another module's local Ray: this test needs its own cluster
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_workers_on_two_nodes_of_a_cluster_joined_by_address(two_nodes: Cluster, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    executor = RayExecutor(
        functools.partial(_context, url),
        workers=2,
        cpus_per_worker=1,  # one CPU per node: the two actors cannot share a node
        threads_per_worker=1,
        address=two_nodes.address,
        init_kwargs={"runtime_env": {"env_vars": {"PYTHONPATH": str(HERE)}}},
    )
    queue = TrainQueue(tmp_path / "q.sqlite")
    owners = [f"u{i}" for i in range(6)]
    queue.add([TrainJob("raynode", "user", u, "t") for u in owners])
    ctx = _context(url)
    assert queue.run(ctx, executor=executor)["done"] == len(owners)
    records = {r.key.owner: r for r in ctx.registry.list()}
    assert sorted(records) == owners
    nodes = {r.meta["node"] for r in records.values()}
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]} if ray.is_initialized() else None
    assert len(nodes) == 2, nodes  # the jobs ran on both nodes
    assert alive is None or nodes <= alive
    assert all(r.meta["pid"] != os.getpid() for r in records.values())
    assert {q.adapter for q in queue.jobs("done")} == {r.name for r in records.values()}
