"""The training manifest every trainer registers with its adapter: whose data, which job.

Why one helper: each trainer knows which rows it learned from (SFT rows, preference pairs,
projector rows, each carrying its ``user_id``) and which population it chose them from;
this turns that into a :class:`~tailorlm.data.TrainingManifest` the same way for all of
them, so ``Store.delete_user`` can mark the adapter stale and ``retrain-stale`` can re-run
the very job (``options["job"]``) on the same population minus the deleted users.

It is also the last guard of a rebuild: a manifest that would record a row of a user the
context excludes raises instead of registering an adapter that learned from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tailorlm.data import ArtifactRef, TrainingManifest

if TYPE_CHECKING:
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob

__all__ = ["BUILDER_TRAIN", "inherited_refs", "training_manifest"]

#: ``options["builder"]`` of a manifest written by a trainer: rebuilt by re-running ``options["job"]``.
BUILDER_TRAIN = "train"


def inherited_refs(ctx: TrainContext, init_name: str | None) -> tuple[ArtifactRef, ...]:
    """The artifact of the adapter named ``init_name`` that a job started from (none: ``()``).

    Raises:
        ValueError: no registered adapter has that name any more (it was replaced while
            training), so what the new adapter inherited cannot be recorded.
    """
    if not init_name:
        return ()
    for rec in ctx.registry.list():
        if rec.name == init_name and (ref := ctx.registry.ref(rec.key)) is not None:
            return (ref,)
    raise ValueError(f"the adapter {init_name!r} this job started from is no longer registered; train again")


def training_manifest(
    job: TrainJob,
    ctx: TrainContext,
    *,
    contributors: Iterable[str],
    population: Iterable[str],
    init_from: str | None = None,
) -> TrainingManifest:
    """The manifest of ``job``: one entry per row in ``contributors`` (their user ids), the
    rest of ``population`` with 0 rows, the job itself, and the adapter ``init_from`` names.

    Raises:
        ValueError: a user of ``ctx.exclude`` would be recorded (a rebuild must not learn from them).
    """
    users: dict[str, int] = dict.fromkeys(population, 0)
    users.update(Counter(contributors))
    if leaked := sorted(set(users) & set(ctx.exclude)):
        raise ValueError(
            f"{job.method} {job.scope} job on {job.task!r} would learn from {len(leaked)} excluded user(s); "
            "refusing to register it"
        )
    rebuild = dict(ctx.rebuild or {})
    options = {"builder": BUILDER_TRAIN, "job": job.to_dict(), **({"rebuild": rebuild} if rebuild else {})}
    return TrainingManifest(
        users=users,
        task=job.task,
        options=options,
        inherits=inherited_refs(ctx, init_from),
        excluded=int(rebuild.get("excluded", len(ctx.exclude))),
    )
