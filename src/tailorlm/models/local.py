"""A :class:`~tailorlm.models.base.Generator` running a Hugging Face causal LM in-process.

This is the backend tests, notebooks and per-user adapter training use: the packaged
SmolLM2-135M-Instruct by default (converted once per machine, see
:mod:`tailorlm.models._packaged`), or any local Hugging Face model folder. torch,
transformers and peft are imported inside methods so that ``import tailorlm.models``
stays fast.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tailorlm.models._output_head import packed_input
from tailorlm.models._packaged import SMOLLM2_NAME, ensure_smollm2, offline_hub
from tailorlm.models.base import (
    BASE_ADAPTER,
    GenerationConfig,
    Messages,
    cut_at_stop,
    normalize_batch,
    normalize_messages,
    resolve_adapters,
)
from tailorlm.models.dtype import resolve_dtype
from tailorlm.models.gathered_lora import GatheredLoRA
from tailorlm.models.soft_inputs import soft_prompt_inputs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TransformersGenerator", "soft_prompt_inputs"]


class TransformersGenerator:
    """Batched chat generation with optional per-row LoRA adapters.

    ``model`` is ``"smollm2"`` (the packaged default) or a local Hugging Face model folder.
    Prompts are left-padded so every row's new tokens start at the same column; with the
    attention mask passed through, batched greedy output equals one-at-a-time output.

    Attributes ``model`` and ``tokenizer`` are public for training code. ``model`` is the
    plain transformers model until the first :meth:`add_adapter`, then the
    ``peft.PeftModel`` wrapping it (:attr:`base_model` is always the plain one).
    ``load_seconds`` and ``converted_now`` tell a cold load (GGUF conversion) from a warm one.
    ``dtype="auto"`` is bf16 where the device computes it natively (:func:`~tailorlm.models.dtype.native_bf16`),
    else fp32; :attr:`dtype` holds the one chosen.

    Calls are serialised by a lock: one model cannot run two generations at once, and
    adapter switching is global model state.
    """

    def __init__(
        self,
        model: str = "smollm2",
        *,
        cache_dir: Path | None = None,
        dtype: Literal["auto", "float32", "bfloat16"] = "float32",
        device: str = "cpu",
        gathered_lora: bool = True,
    ) -> None:
        start = time.perf_counter()
        if model == "smollm2":
            if cache_dir is None:
                from tailorlm.settings import default_cache_dir

                cache_dir = default_cache_dir()
            converted = ensure_smollm2(Path(cache_dir))
            path, self.converted_now = converted.path, converted.converted_now
            self.name = SMOLLM2_NAME
        else:
            path = Path(model).expanduser()
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"model {model!r} is neither 'smollm2' nor a local Hugging Face model folder (no config.json there)"
                )
            self.name, self.converted_now = path.name, False

        offline_hub()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be 'auto', 'float32' or 'bfloat16', got {dtype!r}")
        dtype = resolve_dtype(dtype, device)  # type: ignore[assignment]
        self.path, self.device, self.dtype = path, device, dtype
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            path, padding_side="left", local_files_only=True
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        self.model: Any = loaded.to(device).eval()
        if (head := self.model.get_output_embeddings()) is not None:
            head.register_forward_pre_hook(packed_input)
        self._peft_wrapped = False
        #: mixed-adapter batches gather plain LoRA into batched matmuls; None: PEFT's per-adapter loop
        self.gathered_lora: GatheredLoRA | None = GatheredLoRA() if gathered_lora else None
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._count_tokenizer: Any = None
        self.load_seconds = time.perf_counter() - start

    def __repr__(self) -> str:
        return f"TransformersGenerator(name={self.name!r}, path='{self.path}', dtype={self.dtype!r})"

    # -- generation ---------------------------------------------------------------------

    def generate(
        self,
        batch: Sequence[Messages],
        *,
        config: GenerationConfig | None = None,
        adapter: str | Sequence[str | None] | None = None,
        soft_prompt: Sequence[Any | None] | None = None,
    ) -> list[str]:
        """Answer each conversation in ``batch``; returns only the new text, stripped.

        ``soft_prompt`` gives one entry per row: None, or a (n_tokens, hidden size) tensor or
        array of input embeddings prepended to that row's prompt (see :func:`soft_prompt_inputs`).
        Rows without one take exactly the path they take without the argument.
        """
        config = config or GenerationConfig()
        convs = normalize_batch(batch)
        rows = resolve_adapters(adapter, len(convs))
        soft = self._resolve_soft(soft_prompt, len(convs))
        if not convs:
            return []
        with self._lock:
            unknown = sorted({r for r in rows if r is not None} - set(self.adapters))
            if unknown:
                raise ValueError(f"unknown adapter {unknown[0]!r}; loaded: {self.adapters}")
            return self._split_soft(
                soft, lambda idx, sp: self._generate([convs[i] for i in idx], config, [rows[i] for i in idx], sp)
            )

    def _resolve_soft(self, soft_prompt: Sequence[Any | None] | None, n: int) -> list[Any | None]:
        """One soft prompt (a float tensor on the model's device and dtype) or None per row."""
        if soft_prompt is None:
            return [None] * n
        if isinstance(soft_prompt, str | bytes) or not isinstance(soft_prompt, Sequence):
            got = type(soft_prompt).__name__
            raise ValueError(f"soft_prompt must be a sequence with one entry (tensor or None) per row, got {got}")
        if len(soft_prompt) != n:
            raise ValueError(f"soft_prompt has {len(soft_prompt)} entries but the batch has {n} conversations")
        import torch

        hidden = self.base_model.get_input_embeddings().weight.shape[1]
        out: list[Any | None] = []
        for i, sp in enumerate(soft_prompt):
            if sp is None:
                out.append(None)
                continue
            t = torch.as_tensor(sp)
            if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] != hidden or not t.is_floating_point():
                raise ValueError(
                    f"soft_prompt[{i}] must be a float (n_tokens >= 1, {hidden}) tensor, got shape {tuple(t.shape)}"
                )
            out.append(t.detach().to(device=self.device, dtype=getattr(torch, self.dtype)))
        return out

    @staticmethod
    def _split_soft(soft: list[Any | None], run: Any) -> list[Any]:
        """Run rows without a soft prompt through the plain path (bit-identical to a call
        without ``soft_prompt``) and the others through the embeddings path, in row order."""
        plain = [i for i, sp in enumerate(soft) if sp is None]
        if len(plain) == len(soft):
            return list(run(plain, None))
        with_soft = [i for i, sp in enumerate(soft) if sp is not None]
        out: list[Any] = [None] * len(soft)
        for idx, sp in ((plain, None), (with_soft, [soft[i] for i in with_soft])):
            if idx:
                for i, value in zip(idx, run(idx, sp), strict=True):
                    out[i] = value
        return out

    def _generate(
        self,
        convs: list[list[dict[str, str]]],
        config: GenerationConfig,
        rows: list[str | None],
        soft: list[Any] | None = None,
    ) -> list[str]:
        import torch

        if soft is None:
            enc = self.tokenizer.apply_chat_template(
                convs, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
            ).to(self.device)
        else:
            ids = [
                self.tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"]
                for c in convs
            ]
            with torch.inference_mode():
                embeds, mask, _ = soft_prompt_inputs(
                    self.model.get_input_embeddings(), ids, soft, pad_token_id=self.tokenizer.pad_token_id
                )
            enc = {"inputs_embeds": embeds, "attention_mask": mask}
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if config.greedy:
            kwargs["do_sample"] = False
        else:  # top_k=0: OpenAI-style sampling has no top-k cut (transformers defaults to 50)
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
        if config.stop:
            # Stops generation early; the text is still cut post hoc, since the stop string
            # may end mid-token and must not appear in the output.
            kwargs.update(stop_strings=list(config.stop), tokenizer=self.tokenizer)

        seeded = not config.greedy and config.seed is not None
        rng = torch.random.fork_rng(devices=[]) if seeded else contextlib.nullcontext()
        with rng, self._adapter_context(rows, kwargs), self._eval_mode(), torch.inference_mode():
            if seeded:
                torch.manual_seed(config.seed)
            out = self.model.generate(**enc, **kwargs)
        # with inputs_embeds alone, generate returns only the new tokens
        new_tokens = out[:, enc["input_ids"].shape[1] :] if soft is None else out
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(t, config.stop).strip() for t in texts]

    @contextlib.contextmanager
    def using_adapter(self, name: str | None) -> Iterator[Any]:
        """The model, held exclusively, in eval mode, with adapter ``name`` active (None: no
        adapter): for callers that run the model themselves (a prefix-cached scorer) but must
        answer exactly as :meth:`score_choices` with ``adapter=name`` would."""
        import torch

        with self._lock:
            if name is not None and name not in self.adapters:
                raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapters}")
            with self._adapter_context([name], {}), self._eval_mode(), torch.inference_mode():
                yield self.model

    @contextlib.contextmanager
    def _adapter_context(self, rows: list[str | None], kwargs: dict[str, Any]) -> Iterator[None]:
        """Route each row to its adapter: one for all rows, none, or a mixed batch (gathered
        when every adapter is plain LoRA, else PEFT's ``adapter_names``). The batch keeps its
        rows for the whole call (``generate`` pads finished rows), as the gathered hooks need."""
        names = set(rows)
        if not self._peft_wrapped:
            yield
        elif names == {None}:
            with self.model.disable_adapter():
                yield
        elif len(names) == 1:
            self.model.set_adapter(rows[0])
            yield
        else:
            with self._per_row_adapters([r if r is not None else BASE_ADAPTER for r in rows]) as extra:
                kwargs.update(extra)
                yield

    @contextlib.contextmanager
    def _per_row_adapters(self, names: list[str]) -> Iterator[dict[str, Any]]:
        """Each row's adapter (``__base__`` = none) for the forward passes run inside: gathered
        into two batched matmuls per LoRA layer when every adapter named is plain LoRA
        (:mod:`tailorlm.models.gathered_lora`), else PEFT's ``adapter_names``. Yields the
        forward's extra keyword arguments (the decode batch uses this too)."""
        if not self._peft_wrapped:
            yield {}
        elif self.gathered_lora is not None and self.gathered_lora.supports(self.model, names):
            with self.gathered_lora.rows(self.model, names):
                yield {}
        else:
            yield {"adapter_names": names}

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Generate in eval mode (no dropout; PEFT refuses mixed batches in training mode)
        but hand the model back as found, since training code shares it."""
        was_training = self.model.training
        if not was_training:  # the common case; eval()/train() walk every module (~20 ms each)
            yield
            return
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def score_choices(
        self,
        batch: Sequence[Messages],
        choices: Sequence[str],
        *,
        adapter: str | Sequence[str | None] | None = None,
        soft_prompt: Sequence[Any | None] | None = None,
    ) -> Any:
        """Log-probability of each choice as the assistant's whole answer, per conversation.

        Returns a numpy array of shape (len(batch), len(choices)). This is constrained
        choice: the model can only "answer" one of ``choices``, so nothing is unparsable.
        Single-token choices (ratings "1".."5") cost one forward pass per batch; longer
        choices are scored by summing token log-probabilities of prompt + choice.
        ``soft_prompt`` works as in :meth:`generate` (rows without one are scored as before).
        """
        import numpy as np

        if not choices:
            raise ValueError("choices is empty")
        convs = normalize_batch(batch)
        rows = resolve_adapters(adapter, len(convs))
        soft = self._resolve_soft(soft_prompt, len(convs))
        with self._lock:
            unknown = sorted({r for r in rows if r is not None} - set(self.adapters))
            if unknown:
                raise ValueError(f"unknown adapter {unknown[0]!r}; loaded: {self.adapters}")
            prompts = [
                self.tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"]
                for c in convs
            ]
            choice_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
            if any(not ids for ids in choice_ids):
                raise ValueError("a choice tokenizes to nothing")
            scored = self._split_soft(
                soft,
                lambda idx, sp: list(self._score([prompts[i] for i in idx], choice_ids, [rows[i] for i in idx], sp)),
            )
            return np.stack(scored).astype(np.float64) if scored else np.zeros((0, len(choices)))

    def _score(
        self, prompts: list[list[int]], choice_ids: list[list[int]], rows: list[str | None], soft: list[Any] | None
    ) -> Any:
        import numpy as np
        import torch

        n_choices = len(choice_ids)
        seqs = [p + ids for p in prompts for ids in choice_ids]
        single = all(len(ids) == 1 for ids in choice_ids)
        if single:
            seqs = prompts
        kwargs: dict[str, Any] = {}
        row_adapters = rows if single else [r for r in rows for _ in choice_ids]
        with self._adapter_context(row_adapters, kwargs), self._eval_mode(), torch.inference_mode():
            if soft is None:
                width = max(len(s) for s in seqs)
                pad = self.tokenizer.pad_token_id
                input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
                inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
            else:
                seq_soft = soft if single else [sp for sp in soft for _ in choice_ids]
                embeds, mask, positions = soft_prompt_inputs(
                    self.model.get_input_embeddings(), seqs, seq_soft, pad_token_id=self.tokenizer.pad_token_id
                )
                inputs = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions}
                width = embeds.shape[1]
            logits = self.model(**inputs, **kwargs).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        if single:
            first = [ids[0] for ids in choice_ids]
            return logp[:, -1, first].cpu().numpy().astype(np.float64)
        out = np.zeros((len(prompts), n_choices))
        for n in range(len(seqs)):
            i, j = divmod(n, n_choices)
            ids = choice_ids[j]
            # token t of the choice sits at position width-len(ids)+t, predicted at the position before
            pos = torch.arange(width - len(ids) - 1, width - 1, device=self.device)
            out[i, j] = float(logp[n, pos, torch.tensor(ids, device=self.device)].sum())
        return out

    def encode(self, texts: Sequence[str], *, max_tokens: int = 128, batch_size: int = 16) -> Any:
        """The base model's mean-pooled last hidden state per text, no adapter
        (:func:`~tailorlm.models.pooling.mean_pooled_states`)."""
        from tailorlm.models.pooling import mean_pooled_states

        with self.using_adapter(None):
            return mean_pooled_states(self.base_model, self.tokenizer, texts, max_tokens=max_tokens,
                                      batch_size=batch_size)  # fmt: skip

    def count_tokens(self, messages: Messages) -> int:
        """Prompt length in tokens after the chat template (what a context budget counts).

        Uses its own copy of the tokenizer under its own lock: counting (the service bounds
        every prompt before it reaches the model) never waits for a generation."""
        with self._counting() as tok:
            enc = tok.apply_chat_template(normalize_messages(messages), add_generation_prompt=True, return_dict=True)
        return len(enc["input_ids"])

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a bare text (a completion), without special tokens."""
        with self._counting() as tok:
            return len(tok.encode(text, add_special_tokens=False))

    @contextlib.contextmanager
    def _counting(self) -> Iterator[Any]:
        with self._count_lock:
            if self._count_tokenizer is None:
                import copy

                self._count_tokenizer = copy.deepcopy(self.tokenizer)
            yield self._count_tokenizer

    @property
    def context_length(self) -> int:
        """The most tokens (prompt + answer) the model attends to."""
        return int(self.base_model.config.max_position_embeddings)

    def decode_batch(self) -> Any:
        """A :class:`~tailorlm.models.continuous.ContinuousBatch` over this model (the service's
        scheduler drives it; see :mod:`tailorlm.models.continuous`)."""
        from tailorlm.models.continuous import ContinuousBatch

        return ContinuousBatch(self)

    # -- adapters -----------------------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        """Names of the loaded LoRA adapters, in load order."""
        return list(self.model.peft_config) if self._peft_wrapped else []

    @property
    def base_model(self) -> PreTrainedModel:
        """The plain transformers model, with or without adapters loaded around it."""
        return self.model.get_base_model() if self._peft_wrapped else self.model

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load the PEFT LoRA adapter saved in ``path`` under ``name``."""
        if not isinstance(name, str) or not name or name == BASE_ADAPTER:
            raise ValueError(f"adapter name must be a non-empty string other than {BASE_ADAPTER!r}")
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
        try:
            from peft import PeftModel
        except ImportError as exc:  # peft is an optional extra
            raise ImportError("adapters need peft: pip install 'tailorlm[train]'") from exc
        with self._lock, warnings.catch_warnings():
            # peft 0.21 reads an attribute transformers 5 deprecated; not actionable here.
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            if name in self.adapters:
                raise ValueError(f"adapter {name!r} is already loaded")
            if self._peft_wrapped:
                self.model.load_adapter(path, adapter_name=name, is_trainable=False)
                if not self.model.training:  # new layers start in training mode; _eval_mode trusts the root's flag
                    self.model.eval()
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name, is_trainable=False).eval()
                self._peft_wrapped = True

    def add_weighted_adapter(
        self, name: str, sources: Sequence[str], weights: Sequence[float], *, combination: str = "linear"
    ) -> bool:
        """Load adapter ``name``, a weighted merge of loaded ``sources`` (PEFT ``add_weighted_adapter``).

        Under the generator's lock, since it changes the model concurrent generations use.
        Returns False, merging nothing, when ``name`` is already loaded: callers name a merge
        after its sources and weights, so two threads asking for it need it only once.
        """
        if len(sources) != len(weights) or not sources:
            raise ValueError(f"need one weight per source adapter, got {len(sources)} sources, {len(weights)} weights")
        with self._lock:
            missing = [s for s in sources if s not in self.adapters]
            if missing:
                raise ValueError(f"source adapters {missing} are not loaded; loaded: {self.adapters}")
            if name in self.adapters:
                return False
            self.model.add_weighted_adapter(
                adapters=list(sources), weights=list(weights), adapter_name=name, combination_type=combination
            )
            if not self.model.training:
                self.model.eval()
            return True

    def delete_adapter(self, name: str) -> None:
        """Unload adapter ``name``; after the last one the plain model is restored."""
        with self._lock:
            if name not in self.adapters:
                raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapters}")
            self.model.delete_adapter(name)
            if not self.model.peft_config:
                self.model = self.model.unload()
                self._peft_wrapped = False
