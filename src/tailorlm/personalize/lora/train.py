"""LoRA supervised fine-tuning at user, persona or global scope (trainer ``"lora"``).

A plain torch loop (AdamW) over a PEFT model, rather than a Trainer: on a 135M model
on CPU, every step is seconds, so transparency (loss per step, tokens, answer-only
loss) matters more than features. The loss covers the answer tokens only -- the
prompt is given, not learned.

The generator is never touched: training runs on a *fresh* copy of the base model
loaded from the generator's folder, so the generator keeps producing the base model's
exact outputs (and whatever adapters it has loaded) while and after training.

``init_from="global"`` starts a user adapter from the task's global adapter
(OPPU-style: global task knowledge first, then the user's own data); it is stored
under variant ``"init=global"`` so both kinds of user adapter can coexist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorlm.personalize.lora.config import LoraTrainConfig
from tailorlm.personalize.training.data import (
    SFTExample,
    batch_order,
    data_snapshot,
    encode_sft,
    persona_members,
    population_examples,
    sft_examples,
    user_examples,
)
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.provenance import training_manifest

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterRecord

__all__ = ["lora_config", "sft_steps", "train_lora", "training_rows"]


def training_rows(job: TrainJob, ctx: TrainContext, cfg: LoraTrainConfig) -> tuple[list[SFTExample], list[str]]:
    """The SFT rows a job may learn from, and the users they come from (leakage rules in data.py;
    with ``cfg.history``, the prompts quote each user's earlier history: training/history.py)."""
    store = ctx.store
    population = ctx.population()
    if job.scope == "user":
        exs = user_examples(store, job.task, job.owner, before=cfg.before, exclude_latest=cfg.exclude_latest)
        users = [job.owner]
    elif job.scope == "persona":
        users = persona_members(
            store, job.owner, population, persona_by=cfg.persona_by, n_clusters=cfg.n_clusters,
            embedder=ctx.embedder, seed=cfg.seed,
        )  # fmt: skip
        exs = population_examples(store, job.task, users)
    else:
        users = sorted(population)
        exs = population_examples(store, job.task, users)
    if cfg.max_examples is not None and len(exs) > cfg.max_examples:
        import random

        exs = sorted(random.Random(cfg.seed).sample(exs, cfg.max_examples), key=lambda e: (e.user_id, e.example_id))
    rows = _history_rows(exs, ctx, cfg, population) if cfg.history else sft_examples(exs)
    if not rows:
        where = f"user {job.owner!r}" if job.scope == "user" else f"{job.scope} scope ({len(users)} users)"
        raise ValueError(
            f"no training examples of task {job.task!r} for {where}"
            + (" (the latest example is held out as the query)" if job.scope == "user" else "")
        )
    return rows, users


def _history_rows(exs: list[Any], ctx: TrainContext, cfg: LoraTrainConfig, population: list[str]) -> list[SFTExample]:
    """Rows rendered with the history spec's retrieval, fitted on the training population."""
    from tailorlm.personalize.training.history import history_method, history_sft_examples

    assert cfg.history is not None
    method = history_method(
        cfg.history, ctx.store, population, k=cfg.history_k, budget_tokens=cfg.history_budget,
        collaborators={"embedder": ctx.embedder, "generator": ctx.generator},
    )  # fmt: skip
    return history_sft_examples(exs, method, ctx.store)


def _batch(tokenizer: Any, encoded: Sequence[tuple[list[int], list[int]]]) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = [i + [pad] * (width - len(i)) for i, _ in encoded]
    labels = [lab + [-100] * (width - len(lab)) for _, lab in encoded]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in encoded]
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


def sft_steps(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[list[int], list[int]]],
    order: Sequence[Sequence[int]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    progress: Any = None,
) -> tuple[list[float], int, int]:
    """AdamW over ``model``'s trainable parameters, one step per batch of ``order`` (indices
    into ``encoded``, answer-only labels). Returns the loss per step, the tokens seen and
    the answer tokens learned. ``progress(step, steps, loss)`` after each step."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    losses: list[float] = []
    tokens = answer_tokens = 0
    for step, idx in enumerate(order, 1):
        batch = _batch(tokenizer, [encoded[i] for i in idx])
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        tokens += int(batch["attention_mask"].sum())
        answer_tokens += int((batch["labels"] != -100).sum())
        if progress is not None:
            progress(step, len(order), losses[-1])
    return losses, tokens, answer_tokens


def lora_config(cfg: Any) -> Any:
    """PEFT's LoraConfig for a causal LM from any config with ``r``, ``alpha``, ``dropout`` and
    ``target_modules`` (LoRA, DPO and TALLRec jobs)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )


def _fresh_peft_model(ctx: TrainContext, job: TrainJob, cfg: LoraTrainConfig) -> tuple[Any, dict[str, Any]]:
    """A trainable PEFT model on a fresh float32 copy of the generator's base model."""
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    path = getattr(ctx.generator, "path", None)
    if path is None or not (Path(path) / "config.json").is_file():
        raise ValueError(
            f"LoRA training needs a local transformers generator with a model folder, got {ctx.generator!r}"
        )
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    init: dict[str, Any] = {}
    if cfg.init_from == "global":
        gkey = dataclasses.replace(job.key(), scope="global", owner="", variant=cfg.global_variant)
        grec = ctx.registry.get(gkey)
        if grec is None:
            hist = "" if cfg.history is None else f" -O history={cfg.history}"
            hist += "" if cfg.history_k is None else f" -O history_k={cfg.history_k}"
            raise ValueError(
                f"init_from='global' but no global LoRA adapter (variant {gkey.variant!r}) for task {job.task!r} "
                f"is registered; train one first: tailorlm train --method lora --scope global --task {job.task}{hist}"
            )
        model = PeftModel.from_pretrained(base, grec.path, is_trainable=True)
        init = {"init_from": grec.name}
    else:
        model = get_peft_model(base, lora_config(cfg))
    return model, init


def train_lora(job: TrainJob, ctx: TrainContext) -> AdapterRecord:
    """Train the LoRA adapter ``job`` names, save it through the registry, return its record."""
    import torch

    if job.method != "lora":
        raise ValueError(f"train_lora got a job for method {job.method!r}")
    cfg = LoraTrainConfig.from_mapping(job.config)
    rows, users = training_rows(job, ctx, cfg)
    tokenizer = ctx.generator.tokenizer
    encoded = [encode_sft(tokenizer, r, cfg.max_length) for r in rows]
    order = batch_order(rows, steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, balanced=cfg.balanced)

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        torch.manual_seed(cfg.seed)
        model, init = _fresh_peft_model(ctx, job, cfg)
        manifest = training_manifest(  # before training: a rebuild that would leak fails fast
            job, ctx, contributors=(r.user_id for r in rows), init_from=init.get("init_from"),
            population=[job.owner] if job.scope == "user" else ctx.population(),
        )  # fmt: skip
        setup_seconds, start = time.perf_counter() - start, time.perf_counter()
        losses, tokens, answer_tokens = sft_steps(
            model, tokenizer, encoded, order, lr=cfg.lr, weight_decay=cfg.weight_decay, progress=ctx.progress
        )
        seconds = time.perf_counter() - start
        key = job.key(cfg.key_variant)
        folder = ctx.registry.folder_for(key)
        try:
            model.save_pretrained(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                import shutil

                shutil.rmtree(folder)
            raise
    del model
    gc.collect()
    meta = {
        "steps": cfg.steps,
        "loss_curve": losses,
        "seconds": seconds,  # the optimizer steps only
        "setup_seconds": setup_seconds,  # import + fresh base model load
        "examples": len(rows),
        "users": len(users),
        "tokens": tokens,
        "answer_tokens": answer_tokens,
        "data_snapshot": data_snapshot(rows),
        "last_example_time": max((r.timestamp for r in rows if r.timestamp is not None), default=None),
        "history_rows": sum(r.history_items > 0 for r in rows),  # rows quoting the user's history
        "config": dataclasses.asdict(cfg),
        **init,
    }
    return ctx.registry.register(key, folder, meta, manifest=manifest)
