"""Rebuild stale artifacts without the deleted users they learned from (``tailorlm train retrain-stale``).

Why: after ``Store.delete_user`` the artifacts that learned from the user are marked stale
(``tailorlm.data.provenance``); unlearning means training them again as if the user had
never been there. Each stale artifact's manifest says how: ``options["job"]`` is the
training job to re-run with the same options (trained adapters: LoRA, DPO, soft-prompt
projectors), ``options["builder"] == "persona-description"`` a persona description to
write again. The rebuild's population is the recorded one (users whose keyed hash is in
the manifest and who are still stored) minus every deleted subject; a deleted user who
was loaded again is also named in ``TrainContext.exclude``, which the trainers' manifest
refuses to record. After each rebuild the new provenance is checked: no deleted subject
may be in it, else the outcome is "failed" and the artifact stays stale.

Order: artifacts that started from another (a user adapter initialized from the global
one) come after everything else, global before persona before user, so a child is
retrained from its parent's *new* version. An artifact none of whose learned rows are
left (it learned only from deleted users) is removed: there is nothing to rebuild it from.

Limits: a rebuild runs on the store as it is now, so rows added since the first training
are learned too (the manifest records them); a persona adapter of ``cluster=k`` personas
re-clusters the remaining population, whose cluster ids can differ from the first run's.
Caches outside the store (an evaluation's generation cache, a train queue file) are not
provenance-tracked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tailorlm.data import ArtifactRef, StaleArtifact
from tailorlm.personalize.training.provenance import BUILDER_TRAIN

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.personalize.training.jobs import TrainContext

__all__ = ["RetrainOutcome", "RetrainPlan", "plan_retrain", "retrain_stale"]

Action = Literal["retrain", "remove", "skip"]
Status = Literal["retrained", "removed", "skipped", "failed"]
_SCOPE_ORDER = {"global": 0, "persona": 1, "user": 2}


@dataclass(frozen=True)
class RetrainPlan:
    """What ``retrain_stale`` will do with one stale artifact, and over whom."""

    artifact: StaleArtifact
    action: Action
    reason: str
    population: tuple[str, ...] = ()  # stored users the rebuild may learn from
    exclude: tuple[str, ...] = ()  # deleted users stored again: explicitly kept out
    options: dict[str, Any] = field(default_factory=dict)  # the manifest's options


@dataclass(frozen=True)
class RetrainOutcome:
    """What happened to one planned artifact; ``name`` is the rebuilt adapter's new name."""

    plan: RetrainPlan
    status: Status
    detail: str
    name: str | None = None


def _plan_one(store: Store, art: StaleArtifact, by_subject: dict[str, str]) -> RetrainPlan:
    """The plan of one stale artifact (see the module docstring for the rules)."""
    manifest = art.manifest or {}
    options = dict(manifest.get("options") or {})
    builder = options.get("builder")
    if not manifest or builder is None:
        return RetrainPlan(art, "skip", "provenance unknown: no manifest says how it was built")
    prov = store.provenance(art.ref)
    live = {s: n for s, n in prov.users.items() if s not in prov.deleted}
    population = tuple(sorted(by_subject[s] for s in live if s in by_subject))
    exclude = tuple(sorted(by_subject[s] for s in prov.deleted if s in by_subject))
    known = f"{len(population)} remaining user(s), {art.deleted_users} deleted left out"
    if builder == BUILDER_TRAIN and art.ref.kind == "adapter":
        if not any(n > 0 and s in by_subject for s, n in live.items()):
            return RetrainPlan(art, "remove", "it learned only from deleted users", population, exclude, options)
        job = options.get("job") or {}
        what = f"re-run {job.get('method')} {job.get('scope')} on {job.get('task')!r}"
        return RetrainPlan(art, "retrain", f"{what}: {known}", population, exclude, options)
    if builder == "persona-description" and art.ref.kind == "persona":
        if not population:
            return RetrainPlan(art, "remove", "no member of the persona is left", population, exclude, options)
        return RetrainPlan(art, "retrain", f"describe again: {known}", population, exclude, options)
    return RetrainPlan(art, "skip", f"no rebuilder for {art.ref.kind!r} built by {builder!r}", options=options)


def plan_retrain(store: Store) -> list[RetrainPlan]:
    """A plan for every stale artifact, in the order they will be rebuilt (no model needed)."""
    stale = store.stale_artifacts()
    if not stale:
        return []
    by_subject = {s: u for u, s in store.subjects_of(store.list_users()).items()}
    plans = [_plan_one(store, art, by_subject) for art in stale]

    def order(p: RetrainPlan) -> tuple[bool, int, bool, ArtifactRef]:
        inherits = bool((p.artifact.manifest or {}).get("inherits"))
        ref = p.artifact.ref
        return inherits, _SCOPE_ORDER.get(ref.scope, 3), ref.kind != "adapter", ref

    return sorted(plans, key=order)


def _check_clean(store: Store, ref: ArtifactRef, plan: RetrainPlan) -> None:
    """Raise unless the rebuilt ``ref`` is not stale and records none of the deleted subjects."""
    prov = store.provenance(ref)
    if prov.stale or set(prov.users) & set(plan.artifact.deleted_subjects):
        raise RuntimeError(
            f"{ref.label()} was rebuilt but its provenance still holds deleted users "
            "(does it start from another stale artifact that could not be rebuilt?)"
        )


def _rebuild_adapter(ctx: TrainContext, plan: RetrainPlan) -> RetrainOutcome:
    """Re-run the recorded job over the plan's population, deleted users excluded."""
    from tailorlm.personalize.registry import get_trainer
    from tailorlm.personalize.training.jobs import TrainJob

    ref = plan.artifact.ref
    art = ctx.store.get_artifact(**ref.to_dict())
    old = ctx.registry.record_of(art) if art is not None else None
    if old is None:
        return RetrainOutcome(plan, "skipped", "not an adapter of this base model (retrain it with its own model)")
    job = TrainJob.from_dict(plan.options["job"])
    saved = (ctx.users, ctx.exclude, ctx.rebuild)
    ctx.users, ctx.exclude = list(plan.population), frozenset(plan.exclude)
    ctx.rebuild = {"of": old.name, "excluded": plan.artifact.deleted_users}
    try:
        new = get_trainer(job.method)(job, ctx)
    finally:
        ctx.users, ctx.exclude, ctx.rebuild = saved
    new_ref = ctx.registry.ref(new.key)
    if new.key != old.key or new_ref is None:
        raise RuntimeError(f"the job wrote {new.key}, not the stale adapter's key {old.key}")
    if new_ref != ref and ctx.store.get_artifact(**ref.to_dict()) is not None:
        ctx.store.delete_artifact(**ref.to_dict())  # a legacy record the new one replaces
    _check_clean(ctx.store, new_ref, plan)
    return RetrainOutcome(plan, "retrained", f"{old.name} -> {new.name}", name=new.name)


def _rebuild_description(ctx: TrainContext, plan: RetrainPlan) -> RetrainOutcome:
    from tailorlm.personalize.persona.method import rebuild_description

    ref = plan.artifact.ref
    options = {k: v for k, v in plan.options.items() if k != "builder"}
    rebuild_description(
        ctx.store, ctx.generator, ref.owner, plan.population, options, excluded=plan.artifact.deleted_users
    )
    _check_clean(ctx.store, ref, plan)
    return RetrainOutcome(plan, "retrained", f"described again from {len(plan.population)} member(s)")


def retrain_stale(
    ctx: TrainContext,
    plans: Sequence[RetrainPlan] | None = None,
    *,
    on_start: Callable[[RetrainPlan, int, int], None] | None = None,
) -> list[RetrainOutcome]:
    """Carry out ``plans`` (default: :func:`plan_retrain` of ``ctx.store``) one at a time.

    A failure is recorded in its outcome (the artifact stays stale) and the rest go on.
    ``on_start(plan, i, n)`` is called before each (progress display).
    """
    plans = list(plans) if plans is not None else plan_retrain(ctx.store)
    out: list[RetrainOutcome] = []
    for i, plan in enumerate(plans, 1):
        if on_start is not None:
            on_start(plan, i, len(plans))
        ref = plan.artifact.ref
        try:
            if plan.action == "skip":
                out.append(RetrainOutcome(plan, "skipped", plan.reason))
            elif plan.action == "remove":
                ctx.store.delete_artifact(**ref.to_dict())
                out.append(RetrainOutcome(plan, "removed", plan.reason))
            elif ref.kind == "adapter":
                out.append(_rebuild_adapter(ctx, plan))
            else:
                out.append(_rebuild_description(ctx, plan))
        except Exception as exc:  # recorded per artifact; the others still get rebuilt
            out.append(RetrainOutcome(plan, "failed", f"{type(exc).__name__}: {exc}"))
    return out
