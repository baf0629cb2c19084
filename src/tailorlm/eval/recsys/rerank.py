"""The default LLM re-ranker of :func:`tailorlm.eval.recsys.recommend.recommendation`: pointwise yes/no scoring.

:class:`LLMReranker` scores every candidate movie by log P("Yes") - log P("No") under
one personalized context (a tailorlm method's contributions plus the user's
highest-rated training movies), computing the shared context once per user with a
local transformers model. :func:`llm_reranker` is its factory.

Not here: the candidates, the metrics and the control re-ranking
(:mod:`tailorlm.eval.recsys.recommend`); list-wise generation of a ranking (a 135M
model cannot reliably write one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tailorlm.models.base import AdapterHost, ChoiceScorer
from tailorlm.personalize import ContextBlock, ContextItem, Contribution, Query, eligible_history

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["LLMReranker", "llm_reranker"]


def _describe(item: Any, fallback: str) -> str:
    """A movie as the MovieLens loader writes example inputs: 'Title (year). Genres: a, b.'"""
    if item is None or not item.title:
        return fallback
    text = item.title + (f" ({item.attributes['year']})" if item.attributes.get("year") else "") + "."
    genres = item.attributes.get("genres")
    return text + (f" Genres: {', '.join(map(str, genres))}." if genres else "")


def _shared_prefix_logprobs(
    model: Any, tokenizer: Any, convs: Sequence[Sequence[Mapping[str, str]]], choices: Sequence[str], batch_size: int
) -> np.ndarray | None:
    """What ``score_choices`` returns, computing the conversations' common prefix once.

    A user's candidate questions share one long personalized system message and
    differ in a short tail, so running the prefix once and only the tails against
    its key/value cache cuts the work by the context-to-tail ratio (about 10x here).
    Tails are right-padded: a real token never attends to the pads after it, so
    no mask is needed and positions stay those of the unbatched prompt. Returns
    None (caller falls back to ``score_choices``) unless every choice is one token.
    """
    import copy

    import torch

    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    if any(len(ids) != 1 for ids in choice_ids):
        return None
    ids = [
        list(tokenizer.apply_chat_template(list(c), add_generation_prompt=True, return_dict=True)["input_ids"])
        for c in convs
    ]
    first = ids[0]
    n = min(len(x) for x in ids) - 1  # every row keeps at least its last token to predict from
    for x in ids[1:]:
        n = min(n, next((j for j, (a, b) in enumerate(zip(first, x, strict=False)) if a != b), n))
    if n < 1:
        return None
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    columns = [c[0] for c in choice_ids]
    out = np.zeros((len(ids), len(choices)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            cache = model(input_ids=torch.tensor([first[:n]], device=device), use_cache=True).past_key_values
            for i in range(0, len(ids), batch_size):
                tails = [x[n:] for x in ids[i : i + batch_size]]
                width = max(len(t) for t in tails)
                batch_cache = copy.deepcopy(cache)
                batch_cache.batch_repeat_interleave(len(tails))
                inputs = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
                logits = model(input_ids=inputs, past_key_values=batch_cache, use_cache=True).logits.float()
                last = logits[torch.arange(len(tails)), torch.tensor([len(t) - 1 for t in tails])]
                out[i : i + len(tails)] = torch.log_softmax(last, dim=-1)[:, columns].cpu().numpy()
    finally:
        model.train(was_training)
    return out


class LLMReranker:
    """Pointwise LLM re-ranking: log P("Yes") - log P("No") for "Would this user enjoy <movie>?".

    A 135M model cannot reliably write a ranked list, so each candidate is scored by
    constrained choice under one personalized context: the contributions of the
    method ``method_spec`` (e.g. "profile", "rag-bm25", "identity") plus, if
    ``liked > 0``, the user's highest-rated training movies. Contextual calibration
    is not applied: its content-free correction is the same for every candidate of a
    user, so it cannot change their order. Ties keep the CF order.

    With a local transformers generator (one exposing ``model`` and ``tokenizer``) the
    shared context is computed once per user (``share_prefix``), under the requested
    adapter or none; any other generator is scored through its ``score_choices``.
    ``adapter``: answer with this loaded LoRA adapter (a TALLRec adapter,
    :mod:`tailorlm.eval.recsys.tallrec`).
    ``records_`` keeps, per user, the scores, the scoring path and what the prompt held.
    """

    def __init__(
        self,
        store: Store,
        generator: Any,
        *,
        method_spec: str = "profile",
        liked: int = 10,
        liked_min: float = 4.0,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        embedder: Any = None,
        budget_tokens: int = 1024,
        batch_size: int = 10,
        share_prefix: bool = True,
        adapter: str | None = None,
    ) -> None:
        from tailorlm.personalize import parse_method_spec

        if not isinstance(generator, ChoiceScorer):
            raise TypeError(f"{type(generator).__name__} cannot score choices (no score_choices method)")
        if liked < 0 or batch_size < 1:
            raise ValueError(f"liked must be >= 0 and batch_size >= 1, got {liked}, {batch_size}")
        self.store = store
        self.generator = generator
        self.method_spec = method_spec
        self.liked = liked
        self.liked_min = liked_min
        self.budget_tokens = budget_tokens
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        if adapter is not None and adapter not in getattr(generator, "adapters", ()):
            raise ValueError(f"adapter {adapter!r} is not loaded in the generator (loaded: {generator.adapters})")
        self.adapter = adapter
        self.name = f"llm[{method_spec}{f'+liked{liked}' if liked else ''}{f'@{adapter}' if adapter else ''}]"
        self.personalizer = parse_method_spec(
            method_spec,
            collaborators={"generator": generator, "embedder": embedder},
            overrides=overrides,
            budget_tokens=budget_tokens,
        ).fit(store)
        self.records_: dict[str, dict[str, Any]] = {}

    def _liked_block(self, user_id: str, query: Query) -> Contribution:
        entries = [e for e in eligible_history(self.store, user_id, query) if (e.rating or 0) >= self.liked_min]
        entries.sort(key=lambda e: (-(e.rating or 0), -(e.timestamp or 0)))
        items = tuple(
            ContextItem(text=e.title or e.text, source_id=e.entry_id, label=f"{e.rating:g}")
            for e in entries[: self.liked]
        )
        heading = "Movies this user rated highly (their rating after ->):"
        blocks = [ContextBlock("history", heading, items, priority=1)] if items else []
        return Contribution(method="liked", blocks=blocks, scope="user" if items else "none")

    def messages(
        self, user_id: str, candidates: Sequence[str], *, held_out: Sequence[str] = ()
    ) -> list[list[dict[str, str]]]:
        """One conversation per candidate: the personalized system message, then the yes/no question."""
        from tailorlm.personalize import Pipeline, render
        from tailorlm.personalize.render import approx_tokens

        catalogue = self.store.get_items(list(candidates))
        texts = [_describe(catalogue.get(c), c) for c in candidates]
        query = Query(
            text="\n".join(texts),  # what retrieval matches the user's history against
            task="recommendation",
            timestamp=None,
            exclude_doc_ids=tuple(held_out),
            choices=tuple(texts),
        )
        steps = self.personalizer.steps if isinstance(self.personalizer, Pipeline) else [self.personalizer]
        contributions = [s.contribute(user_id, query) for s in steps]
        if self.liked:
            contributions.append(self._liked_block(user_id, query))
        rendered = render(contributions, query, budget_tokens=self.budget_tokens)
        system = rendered.messages[0]["content"]
        convs = [
            [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Would this user enjoy the movie {t} Answer Yes or No."},
            ]
            for t in texts
        ]
        self.records_[user_id] = {
            "candidates": list(candidates),
            "scope": rendered.record.scope,
            "retrieved": [r["id"] for r in rendered.record.retrieved],
            "context_tokens": approx_tokens(system),
        }
        return convs

    def _logprobs(self, convs: list[list[dict[str, str]]]) -> tuple[np.ndarray, str]:
        """(len(convs), 2) log-probabilities of "Yes" and "No", and which path computed them."""
        gen = self.generator
        tokenizer = getattr(gen, "tokenizer", None)
        if self.share_prefix and tokenizer is not None:
            using = getattr(gen, "using_adapter", None)
            if callable(using):  # a local model with adapters: run it with exactly this one (or none)
                with using(self.adapter) as model:
                    logp = _shared_prefix_logprobs(model, tokenizer, convs, ["Yes", "No"], self.batch_size)
            elif (
                getattr(gen, "model", None) is not None
                and self.adapter is None
                and not (isinstance(gen, AdapterHost) and gen.adapters)
            ):
                logp = _shared_prefix_logprobs(gen.model, tokenizer, convs, ["Yes", "No"], self.batch_size)
            else:
                logp = None
            if logp is not None:
                return logp, "shared-prefix"
        batches = [
            np.asarray(
                gen.score_choices(convs[i : i + self.batch_size], ["Yes", "No"], adapter=self.adapter), dtype=float
            )
            for i in range(0, len(convs), self.batch_size)
        ]
        return np.concatenate(batches), "score_choices"

    def __call__(self, user_id: str, candidates: Sequence[str], *, held_out: Sequence[str] = ()) -> list[str]:
        logp, path = self._logprobs(self.messages(user_id, candidates, held_out=held_out))
        scores = (logp[:, 0] - logp[:, 1]).tolist()
        self.records_[user_id].update(scores=scores, scoring=path)
        order = sorted(range(len(candidates)), key=lambda j: (-scores[j], j))
        return [candidates[j] for j in order]


def llm_reranker(store: Store, generator: Any, method_spec: str = "profile", **kwargs: Any) -> LLMReranker:
    """The default LLM re-ranker for :func:`~tailorlm.eval.recsys.recommend.recommendation`.

    See :class:`LLMReranker` for ``kwargs``.

    Example:
        >>> rr = llm_reranker(store, TransformersGenerator(), method_spec="profile")  # doctest: +SKIP
        >>> recommendation(store, n_users=50, rerank=rr)["models"]["rerank"]["metrics"]  # doctest: +SKIP
    """
    return LLMReranker(store, generator, method_spec=method_spec, **kwargs)
