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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tailorlm.personalize.softprompt.projector import (
    POOLINGS,
    ProjectorSpec,
    UserVectors,
    build_projector,
    project,
    save_projector,
)
from tailorlm.train.data import (
    SFTExample,
    batch_order,
    data_snapshot,
    encode_sft,
    population_examples,
    sft_examples,
)
from tailorlm.train.jobs import TrainContext, TrainJob, config_from_mapping, register_trainer

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterRecord

__all__ = ["SoftPromptTrainConfig", "answer_loss", "encode_row", "train_softprompt", "training_set"]


@dataclass(frozen=True)
class SoftPromptTrainConfig:
    """Options of a softprompt job (``TrainJob.config``)."""

    hidden: int = 256  # projector MLP width
    n_tokens: int = 4  # soft tokens per user
    pooling: str = "attention"  # attention (input-aware, PPlug) | mean
    temperature: float = 0.1  # softmax temperature of the attention pooling
    max_items: int = 32  # most recent eligible history entries pooled
    lr: float = 1e-4  # soft tokens are sharp: Adam at 1e-3 overshoots within a few steps
    weight_decay: float = 0.0
    steps: int = 100
    batch_size: int = 4
    max_length: int = 256  # prompt + answer tokens; a longer prompt loses its middle (encode_sft)
    seed: int = 0
    balanced: bool = False  # class-balanced sampling for label tasks
    max_examples: int | None = None  # cap on training rows (a seeded sample)
    variant: str = "default"

    def __post_init__(self) -> None:
        checks = {
            "hidden": self.hidden >= 1,
            "n_tokens": self.n_tokens >= 1,
            "pooling": self.pooling in POOLINGS,
            "temperature": self.temperature > 0,
            "max_items": self.max_items >= 1,
            "lr": self.lr > 0,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "max_length": self.max_length >= 8,
            "max_examples": self.max_examples is None or self.max_examples >= 1,
            "variant": bool(self.variant),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"SoftPromptTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SoftPromptTrainConfig:
        return config_from_mapping(cls, data, tuples=())


def encode_row(tokenizer: Any, row: SFTExample, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt), as the LoRA trainer encodes them."""
    return encode_sft(tokenizer, row, max_length)


def training_set(
    job: TrainJob, ctx: TrainContext, cfg: SoftPromptTrainConfig, spec: ProjectorSpec, vectors: UserVectors
) -> tuple[list[SFTExample], np.ndarray, dict[str, int]]:
    """Rows, one user vector per row (leakage-guarded), and counts (users, skipped rows)."""
    from tailorlm.personalize.base import Query

    users = sorted(ctx.users) if ctx.users is not None else ctx.store.list_users()
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
    if getattr(generator, "adapters", None):
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

    from tailorlm.models.local import soft_prompt_inputs

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


def train_softprompt(job: TrainJob, ctx: TrainContext) -> AdapterRecord:
    """Train the task's projector, save it through the registry, return its record."""
    import torch

    if job.method != "softprompt":
        raise ValueError(f"train_softprompt got a job for method {job.method!r}")
    if job.scope != "global":
        raise ValueError(
            f"softprompt trains one global projector per task (users are represented by their history); "
            f"got scope {job.scope!r}: use --scope global"
        )
    cfg = SoftPromptTrainConfig.from_mapping(job.config)
    generator = ctx.generator
    if not hasattr(getattr(generator, "base_model", None), "get_input_embeddings"):
        raise TypeError(f"softprompt training needs a local TransformersGenerator, got {type(generator).__name__}")
    embedder = ctx.embedder
    if embedder is None:
        from tailorlm.models import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    embedding = generator.base_model.get_input_embeddings()
    spec = ProjectorSpec(
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
    rows, vectors, counts = training_set(job, ctx, cfg, spec, UserVectors(ctx.store, embedder))
    encoded = [encode_row(generator.tokenizer, r, cfg.max_length) for r in rows]
    order = batch_order(rows, steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, balanced=cfg.balanced)

    start = time.perf_counter()
    losses: list[float] = []
    tokens = answer_tokens = 0
    with torch.random.fork_rng(devices=[]):
        projector = build_projector(spec, seed=cfg.seed).to(embedding.weight.device)
        _match_embedding_scale(projector, spec, vectors, float(embedding.weight.detach().float().std()))
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
                losses.append(float(loss.detach()))
                tokens += sum(len(ids) + spec.n_tokens for ids, _ in batch)
                answer_tokens += sum(sum(1 for t in lab if t != -100) for _, lab in batch)
                if ctx.progress is not None:
                    ctx.progress(step, cfg.steps, losses[-1])
    seconds = time.perf_counter() - start
    projector.eval()
    # the trained projector's loss on the first rows: a fixed point a reload must reproduce
    check = list(range(min(len(rows), cfg.batch_size)))
    with torch.no_grad(), _base_only(generator):
        loss_after = float(answer_loss(generator, projector, spec, [encoded[i] for i in check], vectors[check]))
    key = job.key(cfg.variant)
    folder = ctx.registry.folder_for(key)
    try:
        save_projector(projector, spec, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    meta = {
        "steps": cfg.steps,
        "loss_curve": losses,
        "loss_after": loss_after,  # on the first min(batch_size, rows) rows, after training
        "seconds": seconds,
        "examples": len(rows),
        **counts,
        "tokens": tokens,
        "answer_tokens": answer_tokens,
        "data_snapshot": data_snapshot(rows),
        "last_example_time": max((r.timestamp for r in rows if r.timestamp is not None), default=None),
        "config": dataclasses.asdict(cfg),
        "spec": spec.to_dict(),
    }
    return ctx.registry.register(key, folder, meta)


register_trainer("softprompt", train_softprompt)
