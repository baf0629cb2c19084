"""Training the PPlug projector (trainer ``"softprompt"``, global scope only).

The LLM stays frozen and is the generator's own model, used in place: the loss (on the
answer tokens only, as for LoRA) is differentiated with :func:`torch.autograd.grad`
with respect to the projector's parameters alone, so no gradient ever reaches (or is
stored on) the LLM's weights, nothing about the shared model is switched, and the
generator keeps producing exactly what it produced before -- even while training runs.
Loaded LoRA adapters are disabled for the forward passes: the projector learns against
the base model, which is what ``softprompt`` serves on its own.

Data: the training population's examples of the task (``train.data.population_examples``),
each with the user vector built as serving builds it -- from that user's history
eligible for *that* example (strictly earlier, never the example's own target document).
Examples whose user has no earlier history are skipped: serving gives such users no soft
prompt, so they have nothing to teach the projector.

One projector per task serves every user, new users included; there is nothing to train
per user, so ``scope`` must be "global".
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tailorlm.models.base import AdapterHost
from tailorlm.personalize.softprompt.config import SoftPromptTrainConfig
from tailorlm.personalize.softprompt.projector import (
    ProjectorSpec,
    UserVectors,
    build_projector,
    project,
    save_projector,
)
from tailorlm.personalize.training.data import (
    SFTExample,
    batch_order,
    data_snapshot,
    encode_sft,
    population_examples,
    sft_examples,
)
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.provenance import training_manifest

if TYPE_CHECKING:
    from pathlib import Path

    from tailorlm.adapters.registry import AdapterKey, AdapterRecord

__all__ = ["answer_loss", "encode_row", "train_softprompt", "training_set"]


def encode_row(tokenizer: Any, row: SFTExample, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt), as the LoRA trainer encodes them."""
    return encode_sft(tokenizer, row, max_length)


def training_set(
    job: TrainJob, ctx: TrainContext, cfg: SoftPromptTrainConfig, spec: ProjectorSpec, vectors: UserVectors
) -> tuple[list[SFTExample], np.ndarray, dict[str, int]]:
    """Rows, one user vector per row (leakage-guarded), and counts (users, skipped rows)."""
    from tailorlm.personalize.types import Query

    users = sorted(ctx.population())
    exs = population_examples(ctx.store, job.task, users)
    if cfg.max_examples is not None and len(exs) > cfg.max_examples:
        import random

        exs = sorted(random.Random(cfg.seed).sample(exs, cfg.max_examples), key=lambda e: (e.user_id, e.example_id))
    rows, vecs, skipped = [], [], 0
    for ex, row in zip(exs, sft_examples(exs), strict=True):
        vec, _ = vectors(ex.user_id, Query.from_example(ex), spec)
        if vec is None:
            skipped += 1
            continue
        rows.append(row)
        vecs.append(vec)
    if not rows:
        raise ValueError(
            f"no training examples of task {job.task!r} with earlier user history among {len(users)} users "
            f"({len(exs)} examples, {skipped} without history): load task examples and the users' documents first"
        )
    return rows, np.stack(vecs), {"users": len({r.user_id for r in rows}), "skipped_no_history": skipped}


def _base_only(generator: Any) -> contextlib.AbstractContextManager[Any]:
    """Forward passes on the base model even when LoRA adapters are loaded around it."""
    if isinstance(generator, AdapterHost) and generator.adapters:
        return generator.model.disable_adapter()
    return contextlib.nullcontext()


def answer_loss(
    generator: Any,
    projector: Any,
    spec: ProjectorSpec,
    encoded: Sequence[tuple[list[int], list[int]]],
    vectors: np.ndarray,
) -> Any:
    """Mean cross-entropy of the answer tokens with the projected soft prompts in front
    (a scalar tensor carrying gradients to the projector)."""
    import torch

    from tailorlm.models.soft_inputs import soft_prompt_inputs

    soft = project(projector, spec, vectors)
    embedding = generator.base_model.get_input_embeddings()
    embeds, mask, positions = soft_prompt_inputs(
        embedding, [ids for ids, _ in encoded], list(soft), pad_token_id=generator.tokenizer.pad_token_id
    )
    width = embeds.shape[1]
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in encoded], device=embeds.device)
    logits = generator.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits.float()
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def _match_embedding_scale(projector: Any, spec: ProjectorSpec, vectors: np.ndarray, target_std: float) -> None:
    """Start the soft tokens at the scale of real token embeddings (not 3x larger or
    smaller), and without a shared bias, so that users differ from the first step."""
    import torch

    last = projector[-1]
    with torch.no_grad():
        last.bias.zero_()
        std = float(project(projector, spec, vectors[:256]).std())
        if std > 0 and math.isfinite(std):
            last.weight.mul_(target_std / std)


def _check_job(job: TrainJob) -> None:
    """Reject jobs this trainer cannot serve: another method, or a scope other than global."""
    if job.method != "softprompt":
        raise ValueError(f"train_softprompt got a job for method {job.method!r}")
    if job.scope != "global":
        raise ValueError(
            f"softprompt trains one global projector per task (users are represented by their history); "
            f"got scope {job.scope!r}: use --scope global"
        )


def _embedder(ctx: TrainContext) -> Any:
    """The context's embedder, or the default sentence-transformer one (as serving would use)."""
    embedder = ctx.embedder
    if embedder is None:
        from tailorlm.models import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    return embedder


def _spec(job: TrainJob, cfg: SoftPromptTrainConfig, embedder: Any, embedding: Any) -> ProjectorSpec:
    """The projector's shape: from the embedder's dimension to the LLM's embedding width."""
    return ProjectorSpec(
        embed_dim=int(embedder.dim),
        hidden=cfg.hidden,
        n_tokens=cfg.n_tokens,
        d_model=int(embedding.weight.shape[1]),
        embedder=embedder.name,
        task=job.task,
        pooling=cfg.pooling,
        temperature=cfg.temperature,
        max_items=cfg.max_items,
    )


@dataclasses.dataclass
class _TrainLog:
    """What the optimisation loop records: the loss per step and the tokens seen."""

    losses: list[float] = dataclasses.field(default_factory=list)
    tokens: int = 0
    answer_tokens: int = 0


def _optimise(
    generator: Any,
    projector: Any,
    spec: ProjectorSpec,
    cfg: SoftPromptTrainConfig,
    encoded: Sequence[tuple[list[int], list[int]]],
    vectors: np.ndarray,
    order: Sequence[list[int]],
    progress: Callable[[int, int, float], None] | None,
) -> _TrainLog:
    """AdamW on the projector's parameters alone, one batch of ``order`` per step."""
    import torch

    log = _TrainLog()
    params = list(projector.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    projector.train()
    with _base_only(generator):
        for step, idx in enumerate(order, 1):
            batch = [encoded[i] for i in idx]
            loss = answer_loss(generator, projector, spec, batch, vectors[idx])
            # grads of the projector only: nothing accumulates on the shared LLM
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            log.losses.append(float(loss.detach()))
            log.tokens += sum(len(ids) + spec.n_tokens for ids, _ in batch)
            log.answer_tokens += sum(sum(1 for t in lab if t != -100) for _, lab in batch)
            if progress is not None:
                progress(step, cfg.steps, log.losses[-1])
    return log


def _loss_after(
    generator: Any,
    projector: Any,
    spec: ProjectorSpec,
    encoded: Sequence[tuple[list[int], list[int]]],
    vectors: np.ndarray,
    batch_size: int,
) -> float:
    """The trained projector's loss on the first rows: a fixed point a reload must reproduce."""
    import torch

    check = list(range(min(len(encoded), batch_size)))
    with torch.no_grad(), _base_only(generator):
        return float(answer_loss(generator, projector, spec, [encoded[i] for i in check], vectors[check]))


def _save(projector: Any, spec: ProjectorSpec, ctx: TrainContext, key: AdapterKey) -> Path:
    """Save the projector into the registry's folder for ``key`` (removed again on failure)."""
    folder = ctx.registry.folder_for(key)
    try:
        save_projector(projector, spec, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def train_softprompt(job: TrainJob, ctx: TrainContext) -> AdapterRecord:
    """Train the task's projector, save it through the registry, return its record."""
    import torch

    _check_job(job)
    cfg = SoftPromptTrainConfig.from_mapping(job.config)
    generator = ctx.generator
    if not hasattr(getattr(generator, "base_model", None), "get_input_embeddings"):
        raise TypeError(f"softprompt training needs a local TransformersGenerator, got {type(generator).__name__}")
    embedder = _embedder(ctx)
    embedding = generator.base_model.get_input_embeddings()
    spec = _spec(job, cfg, embedder, embedding)
    rows, vectors, counts = training_set(job, ctx, cfg, spec, UserVectors(ctx.store, embedder))
    # Each row's soft prompt is built from that row's user's own history: the same users.
    manifest = training_manifest(job, ctx, contributors=(r.user_id for r in rows), population=ctx.population())
    encoded = [encode_row(generator.tokenizer, r, cfg.max_length) for r in rows]
    order = batch_order(rows, steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, balanced=cfg.balanced)

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        projector = build_projector(spec, seed=cfg.seed).to(embedding.weight.device)
        _match_embedding_scale(projector, spec, vectors, float(embedding.weight.detach().float().std()))
        log = _optimise(generator, projector, spec, cfg, encoded, vectors, order, ctx.progress)
    seconds = time.perf_counter() - start
    projector.eval()
    loss_after = _loss_after(generator, projector, spec, encoded, vectors, cfg.batch_size)
    key = job.key(cfg.variant)
    folder = _save(projector, spec, ctx, key)
    meta = {
        "steps": cfg.steps,
        "loss_curve": log.losses,
        "loss_after": loss_after,  # on the first min(batch_size, rows) rows, after training
        "seconds": seconds,
        "examples": len(rows),
        **counts,
        "tokens": log.tokens,
        "answer_tokens": log.answer_tokens,
        "data_snapshot": data_snapshot(rows),
        "last_example_time": max((r.timestamp for r in rows if r.timestamp is not None), default=None),
        "config": dataclasses.asdict(cfg),
        "spec": spec.to_dict(),
    }
    return ctx.registry.register(key, folder, meta, manifest=manifest)
