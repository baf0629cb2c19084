"""Direct Preference Optimization of a LoRA adapter per user, persona or dimension (trainer ``"dpo"``).

TRL's ``DPOTrainer`` (trl 1.16) on a PEFT LoRA adapter: the reference policy is the
same network with the adapter disabled (``ref_model=None`` plus a ``peft_config``), so
no second model is held in memory. Started from a LoRA adapter (``init_from``), the
reference is that adapter, frozen (TRL copies it to a ``"ref"`` adapter): the usual
SFT-then-DPO recipe, and only the trained copy is saved.

Data: stored :class:`~tailorlm.data.Preference` rows of any source (derived pairs from
:mod:`tailorlm.personalize.training.pairs`, workbench feedback, uploads), selected by
:func:`~tailorlm.personalize.training.pairs.training_pairs`:

- scope ``user``: the user's pairs strictly before the cut-off (``before``; default the
  time of the user's latest example of the task, which is the evaluation query);
- scope ``persona``: the pairs of the persona's members in the training population;
- scope ``global``: the population's pairs; with ``dimension`` (e.g. ``"concise"``) only
  that dimension's pairs, stored under ``variant=<dimension>``: the per-dimension
  policies Personalized-Soups merges per user (``personalize/soups``).

The generator is never touched: training runs on a fresh float32 copy of the base
model loaded from the generator's folder (like the ``lora`` trainer), with its own
tokenizer, in a temporary output folder that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorlm.personalize.dpo.config import DpoTrainConfig
from tailorlm.personalize.training.data import persona_members
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.pairs import training_pairs
from tailorlm.personalize.training.provenance import training_manifest

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterKey, AdapterRecord
    from tailorlm.data import Preference

__all__ = ["dpo_pairs", "pairs_snapshot", "train_dpo"]


def _members(job: TrainJob, ctx: TrainContext, cfg: DpoTrainConfig) -> list[str]:
    """Whose pairs a job may use (the leakage rules of the module docstring)."""
    store = ctx.store
    population = ctx.population()
    if job.scope == "user":
        return [job.owner]
    if job.scope == "global":
        return sorted(population)
    return persona_members(
        store, job.owner, population, persona_by=cfg.persona_by, n_clusters=cfg.n_clusters,
        embedder=ctx.embedder, seed=cfg.seed,
    )  # fmt: skip


def dpo_pairs(job: TrainJob, ctx: TrainContext, cfg: DpoTrainConfig) -> tuple[list[Preference], list[str]]:
    """The pairs a DPO job trains on and the users they come from.

    Raises:
        ValueError: no eligible pair (says where it looked and how to derive some).
    """
    users = _members(job, ctx, cfg)
    before = cfg.before
    if job.scope == "user" and before is None and cfg.exclude_latest:
        dated = [e.timestamp for e in ctx.store.get_examples(task=job.task, user_id=job.owner) if e.timestamp]
        before = max(dated) if dated else None
    pairs = training_pairs(ctx.store, users, before=before, dimension=cfg.dimension, sources=cfg.sources)
    pairs.sort(key=lambda p: (p.timestamp is None, p.timestamp or 0, p.user_id, p.pref_id or ""))
    if cfg.max_pairs is not None:
        pairs = pairs[-cfg.max_pairs :]
    if not pairs:
        where = f"user {job.owner!r}" if job.scope == "user" else f"{job.scope} scope ({len(users)} users)"
        dim = f" of dimension {cfg.dimension!r}" if cfg.dimension else ""
        cut = f" before {before}" if before is not None else ""
        raise ValueError(
            f"no preference pairs{dim} for {where}{cut}; derive some with "
            "tailorlm.personalize.training.pairs.derive_pairs or store Preference records (e.g. from the workbench)"
        )
    return pairs, users


def _cut(tokenizer: Any, text: str, n: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tokenizer.decode(ids[:n])


def _rows(pairs: Sequence[Preference], tokenizer: Any, cfg: DpoTrainConfig, system: str) -> list[dict[str, Any]]:
    """Conversational DPO rows: the prompt as the task renders it (system + user message)."""
    rows = []
    for p in pairs:
        prompt = [
            {"role": "system", "content": system},
            {"role": "user", "content": _cut(tokenizer, p.prompt, cfg.max_prompt_tokens)},
        ]
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": _cut(tokenizer, p.chosen, cfg.max_completion_tokens)}],
                "rejected": [{"role": "assistant", "content": _cut(tokenizer, p.rejected, cfg.max_completion_tokens)}],
            }
        )
    return rows


def pairs_snapshot(pairs: Sequence[Preference]) -> str:
    """sha256 of the exact pairs (user, id, prompt, chosen, rejected) an adapter was trained on."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.user_id, p.pref_id, p.prompt, p.chosen, p.rejected, p.dimension]).encode())
    return h.hexdigest()


def _model(job: TrainJob, ctx: TrainContext, cfg: DpoTrainConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, peft_config or None, tokenizer, init info) on a fresh copy of the base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailorlm.personalize.lora.train import lora_config

    path = getattr(ctx.generator, "path", None)
    if path is None or not (Path(path) / "config.json").is_file():
        raise ValueError(
            f"DPO training needs a local transformers generator with a model folder, got {ctx.generator!r}"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    if cfg.init_from is None:
        return base, lora_config(cfg), tokenizer, {}
    if cfg.init_from == "lora-global":
        key = dataclasses.replace(job.key(), method="lora", scope="global", owner="", variant="default")
    else:
        key = dataclasses.replace(job.key(), method="lora", variant="default")
    rec = ctx.registry.get(key)
    if rec is None:
        raise ValueError(
            f"init_from={cfg.init_from!r} but no LoRA adapter is registered for {key}; train it first "
            f"(method 'lora', scope {key.scope!r}, task {key.task!r})"
        )
    model = PeftModel.from_pretrained(base, rec.path, is_trainable=True)
    return model, None, tokenizer, {"init_from": rec.name}


def train_dpo(job: TrainJob, ctx: TrainContext) -> AdapterRecord:
    """Train the DPO adapter ``job`` names, save it through the registry, return its record."""
    if job.method != "dpo":
        raise ValueError(f"train_dpo got a job for method {job.method!r}")
    cfg = DpoTrainConfig.from_mapping(job.config)
    pairs, users = dpo_pairs(job, ctx, cfg)
    from tailorlm.tasks import get_task

    system = get_task(job.task).system
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        return _train(job, ctx, cfg, pairs, users, system)


def _progress_callback(progress: Callable[[int, int, float], None] | None, total_steps: int) -> Any:
    """A trainer callback that reports (step, total, loss) to ``progress`` at each logged loss."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if progress is not None and logs and "loss" in logs:
                progress(state.global_step, total_steps, float(logs["loss"]))

    return _Progress()


def _dpo_args(output_dir: str, ctx: TrainContext, cfg: DpoTrainConfig) -> Any:
    """TRL's ``DPOConfig``: constant learning rate, float32, no checkpoints, logs every step."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=output_dir,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=cfg.beta,
        max_length=None,  # rows are cut to size above; TRL's keep_start would cut completions
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=getattr(ctx.generator, "device", "cpu") == "cpu",
        bf16=False,
        fp16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=cfg.seed,
    )


def _save(trainer: Any, ctx: TrainContext, key: AdapterKey) -> Path:
    """Save the trained adapter into the registry's folder for ``key`` (removed again on failure)."""
    folder = ctx.registry.folder_for(key)
    try:
        trainer.model.save_pretrained(folder, selected_adapters=["default"])
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _meta(
    cfg: DpoTrainConfig,
    pairs: list[Preference],
    users: list[str],
    history: list[dict[str, Any]],
    tokens: int,
    seconds: float,
    init: dict[str, Any],
) -> dict[str, Any]:
    """The record's metadata: curves from the trainer's log, data provenance, config."""
    steps = [h for h in history if "loss" in h]
    return {
        "steps": cfg.steps,
        "loss_curve": [float(h["loss"]) for h in steps],
        "margin_curve": [float(h.get("rewards/margins", 0.0)) for h in steps],
        "accuracy_curve": [float(h.get("rewards/accuracies", 0.0)) for h in steps],
        "seconds": seconds,
        "examples": len(pairs),
        "pairs": len(pairs),
        "users": len(users),
        "tokens": tokens,
        "sources": sorted({p.source or "unknown" for p in pairs}),
        "dimension": cfg.dimension,
        "data_snapshot": pairs_snapshot(pairs),
        "last_pair_time": max((p.timestamp for p in pairs if p.timestamp is not None), default=None),
        "config": dataclasses.asdict(cfg),
        **init,
    }


def _train(
    job: TrainJob, ctx: TrainContext, cfg: DpoTrainConfig, pairs: list[Preference], users: list[str], system: str
) -> AdapterRecord:
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="tailorlm-dpo-") as tmp:
        model, peft_config, tokenizer, init = _model(job, ctx, cfg)
        manifest = training_manifest(  # before training: a rebuild that would leak fails fast
            job, ctx, contributors=(p.user_id for p in pairs), init_from=init.get("init_from"),
            population=[job.owner] if job.scope == "user" else ctx.population(),
        )  # fmt: skip
        rows = _rows(pairs, tokenizer, cfg, system)
        args = _dpo_args(tmp, ctx, cfg)
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[_progress_callback(ctx.progress, cfg.steps)],
        )
        trainer.remove_callback(PrinterCallback)  # logs go to the record's curves, not stdout
        trainer.train()
        history = trainer.state.log_history
        tokens = sum(
            2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset
        )
        seconds = time.perf_counter() - start
        key = job.key(cfg.key_variant)
        folder = _save(trainer, ctx, key)
    del trainer, model
    gc.collect()
    meta = _meta(cfg, pairs, users, history, tokens, seconds, init)
    return ctx.registry.register(key, folder, meta, manifest=manifest)
