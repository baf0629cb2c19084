"""TALLRec-style re-ranking: the LLM tuned to answer whether this user would enjoy a movie.

TALLRec (Bao et al., RecSys 2023) tunes a LoRA adapter on instructions of the form "the
user liked these items; will they enjoy this one? Yes/No". Here the training questions
are exactly the ones :class:`~tailorlm.eval.recsys.rerank.LLMReranker` asks at test time
(same personalized system message, same question, one token answered), built from
training users only, on the validation phase of the RecBole protocol:

- a training user's candidates are BPR's top items among those unseen in their *train*
  interactions (at test time: unseen in train and valid);
- a candidate the user interacted with in *valid* is a "Yes", any other candidate a "No"
  (at test time the relevant items are the *test* interactions);
- their valid and test interactions never enter the prompt (the reranker's ``held_out``
  guard), so a target is never quoted in its own question;
- positives and negatives are balanced per user (a user has a few valid items among 20);
  a user whose valid items are all outside the candidates gives no question, so "Yes"
  items are as popular as at test time.

Evaluated users never contribute a training row (:func:`tallrec_rows` refuses them), so
the adapter's comparison with BPR's own order on the evaluated users is clean.

Not here: the candidates, metrics and controls (:mod:`tailorlm.eval.recsys.recommend`);
the re-ranker (:mod:`tailorlm.eval.recsys.rerank`, given ``adapter=``).
"""

from __future__ import annotations

import dataclasses
import gc
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.eval.recsys.bpr import RecSetup, top_k
from tailorlm.personalize.training.data import SFTExample, batch_order, encode_sft

__all__ = ["TallRecConfig", "tallrec_rows", "train_tallrec"]


@dataclass(frozen=True)
class TallRecConfig:
    """What a TALLRec adapter learns from and how.

    Args:
        users: training users sampled (seeded) from those with valid items, never an
            evaluated one.
        positives: "Yes" questions per user (their valid items among the candidates; a
            user with none among them gives no question); as many "No" questions.
        candidates: BPR's top-n a training user's questions are drawn from (as at test time).
        steps, batch_size, lr, r, alpha, dropout, target_modules, max_length, seed: the LoRA
            run (answer-only loss on the one answer token).
    """

    users: int = 128
    positives: int = 2
    candidates: int = 20
    steps: int = 64
    batch_size: int = 4
    lr: float = 3e-4
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    max_length: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.users, self.positives, self.candidates, self.steps, self.batch_size, self.r) < 1:
            raise ValueError(f"every count of a TallRecConfig must be >= 1, got {self}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def tallrec_rows(
    setup: RecSetup, reranker: Any, *, exclude_users: Collection[str], cfg: TallRecConfig
) -> list[SFTExample]:
    """The Yes/No questions a TALLRec adapter learns from (see the module doc).

    ``reranker``: the :class:`~tailorlm.eval.recsys.rerank.LLMReranker` whose prompts the
    adapter will answer; ``exclude_users``: the evaluated users (never a training row)."""
    excluded = set(exclude_users)
    rng = random.Random(f"tallrec:{cfg.seed}")
    eligible = [u for u, items in sorted(setup.valid.items()) if len(items) and setup.users[u] not in excluded]
    chosen = sorted(rng.sample(eligible, min(cfg.users, len(eligible))))
    if not chosen:
        raise ValueError("no training user with valid interactions is left outside the evaluated users")
    u = np.asarray(chosen, dtype=np.int64)
    cands = top_k(setup.mask(u, setup.bpr_scores(u), phase="valid"), cfg.candidates)
    ids = setup.items
    rows: list[SFTExample] = []
    for uu, cand in zip(chosen, cands, strict=True):
        uid = setup.users[uu]
        valid = {ids[i] for i in setup.valid[uu]}
        seen_later = valid | {ids[i] for i in setup.test.get(uu, ())}
        in_cands = [ids[i] for i in cand]
        # Positives only among the candidates, as at test time: a valid item outside BPR's top
        # is typically less popular than every negative, and the adapter would learn "less
        # popular means yes" (a first run that took them re-ranked below a random order).
        pos = [c for c in in_cands if c in valid]
        neg = [c for c in in_cands if c not in seen_later]
        pos = rng.sample(pos, min(cfg.positives, len(pos)))
        neg = rng.sample(neg, min(len(pos), len(neg)))
        items = pos + neg
        if not items:
            continue
        convs = reranker.messages(uid, items, held_out=setup.held_out[uid])
        for item, conv in zip(items, convs, strict=True):
            answer = "Yes" if item in valid else "No"
            rows.append(
                SFTExample(
                    messages=tuple((m["role"], m["content"]) for m in conv),
                    target=answer,
                    user_id=uid,
                    example_id=f"tallrec:{uid}:{item}",
                )
            )
    return rows


def train_tallrec(
    generator: Any,
    rows: list[SFTExample],
    folder: str | Path,
    *,
    cfg: TallRecConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train the adapter on ``rows`` (a fresh float32 copy of the generator's base model; the
    generator is untouched), save it to ``folder``, return what happened (losses, seconds,
    examples, users, answers)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from tailorlm.personalize.lora.train import lora_config, sft_steps

    if not rows:
        raise ValueError("no TALLRec training rows")
    path = getattr(generator, "path", None)
    if path is None or not (Path(path) / "config.json").is_file():
        raise ValueError(
            f"TALLRec training needs a local transformers generator with a model folder, got {generator!r}"
        )
    tokenizer = generator.tokenizer
    encoded = [encode_sft(tokenizer, r, cfg.max_length) for r in rows]
    order = batch_order(rows, steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, balanced=True)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        model = get_peft_model(base, lora_config(cfg))
        losses, tokens, _ = sft_steps(model, tokenizer, encoded, order, lr=cfg.lr, progress=progress)
        model.save_pretrained(str(folder))
    del model, base
    gc.collect()
    return {
        "config": dataclasses.asdict(cfg),
        "examples": len(rows),
        "users": len({r.user_id for r in rows}),
        "answers": {a: sum(r.target == a for r in rows) for a in ("Yes", "No")},
        "loss_curve": losses,
        "tokens": tokens,
        "seconds": time.perf_counter() - start,
    }
