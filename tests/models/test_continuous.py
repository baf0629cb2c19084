"""The continuous decode batch on the real model: rows with different adapters (or none) join
at different steps and leave on their own, and greedy answers equal one-at-a-time answers (fp32).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.models import TransformersGenerator
from tailorlm.models.base import GenerationConfig
from tailorlm.models.continuous import ContinuousBatch
from tailorlm.models.inputs import ModelInput

ROWS = [
    ModelInput([{"role": "user", "content": "Name three colours."}], "cb-a"),
    ModelInput(
        [{"role": "system", "content": "Answer briefly. " * 20}, {"role": "user", "content": "Why is the sky blue?"}]
    ),
    ModelInput([{"role": "user", "content": "Write one sentence about guitars."}], "cb-b"),
    ModelInput([{"role": "user", "content": "Give me a title for a review of a capo."}], "cb-a"),
]


@pytest.fixture(scope="module")
def two_adapters(
    smollm: TransformersGenerator, random_lora: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The session's random LoRA as ``cb-a`` and a second one (other seed) as ``cb-b``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm.path, local_files_only=True)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        other = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    path = tmp_path_factory.mktemp("lora-b") / "random-r2-seed1"
    other.save_pretrained(path)
    smollm.add_adapter("cb-a", random_lora)
    smollm.add_adapter("cb-b", path)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            smollm.delete_adapter("cb-a")
            smollm.delete_adapter("cb-b")


def test_rows_joining_and_leaving_give_the_one_at_a_time_greedy_answers(
    smollm: TransformersGenerator, two_adapters: None
) -> None:
    configs = [GenerationConfig(max_new_tokens=n) for n in (10, 14, 6, 12)]
    configs[3] = GenerationConfig(max_new_tokens=12, stop=("\n",))
    alone = [smollm.generate([r.messages], config=c, adapter=r.adapter)[0] for r, c in zip(ROWS, configs, strict=True)]

    batch = ContinuousBatch(smollm)
    streamed = {i: "" for i in range(len(ROWS))}
    final: dict[int, str] = {}
    sizes = []

    def take(events: list) -> None:
        for ev in events:
            streamed[ev.row_id] += ev.delta
            if ev.finished:
                final[ev.row_id] = ev.text
                assert ev.completion_tokens <= configs[ev.row_id].max_new_tokens

    waiting = list(range(len(ROWS)))
    step = 0
    while waiting or len(batch):
        if waiting and step % 2 == 0:  # a new row joins every other step
            i = waiting.pop(0)
            take(batch.add(i, ROWS[i], configs[i]))
        sizes.append(len(batch))
        take(batch.step())
        step += 1

    assert [final[i] for i in range(len(ROWS))] == alone
    assert [streamed[i] for i in range(len(ROWS))] == alone  # the deltas add up to the answer
    assert max(sizes) >= 3  # rows really shared decode steps
    assert batch.cache is None and batch.mask is None  # everything left


@pytest.mark.parametrize("packed", [True, False])
def test_rows_prefilled_together_give_the_one_at_a_time_greedy_answers(
    smollm: TransformersGenerator, two_adapters: None, packed: bool
) -> None:
    """A burst prefilled in one pass (mixed adapters and none), joined to a row already
    decoding, answers exactly as each row alone: packed end to end (gathered adapters), or
    left-padded (PEFT's per-row adapters, which cannot split one packed row)."""
    configs = [GenerationConfig(max_new_tokens=n) for n in (10, 14, 6, 12)]
    alone = [smollm.generate([r.messages], config=c, adapter=r.adapter)[0] for r, c in zip(ROWS, configs, strict=True)]
    gathered = smollm.gathered_lora
    if not packed:
        smollm.gathered_lora = None
    try:
        batch = ContinuousBatch(smollm)
        assert all(batch.groupable(r) for r in ROWS)
        assert batch.packs(ROWS[1:]) is packed
        final: dict[int, str] = {}

        def take(events: list) -> None:
            final.update({ev.row_id: ev.text for ev in events if ev.finished})

        take(batch.add(0, ROWS[0], configs[0]))
        take(batch.step())
        take(batch.add_many([(i, ROWS[i], configs[i]) for i in (1, 2, 3)]))
        assert len(batch) == 4 and int(batch.mask[1:].eq(0).sum()) > 0  # a group of unequal prompts joined
        while len(batch):
            take(batch.step())
        assert [final[i] for i in range(len(ROWS))] == alone
        with pytest.raises(ValueError, match="cannot be prefilled in a group"):
            batch.add_many([(7, ModelInput(ROWS[0].messages, "nope"), configs[0]), (8, ROWS[1], configs[1])])
        assert len(batch) == 0
    finally:
        smollm.gathered_lora = gathered


def test_a_removed_row_frees_its_padding(smollm: TransformersGenerator) -> None:
    batch = ContinuousBatch(smollm)
    long = ModelInput([{"role": "user", "content": "Summarize: " + "The guitar has six strings. " * 30}])
    short = ModelInput([{"role": "user", "content": "Hi"}])
    batch.add(0, short, GenerationConfig(max_new_tokens=50))
    batch.add(1, long, GenerationConfig(max_new_tokens=50))
    wide = batch.mask.shape[1]
    assert len(batch) == 2 and wide > 150
    batch.step()
    batch.remove(1)
    assert len(batch) == 1
    assert batch.mask.shape[1] < wide / 4  # only the short row's columns are left
    assert int(batch.mask.sum()) == batch.mask.shape[1]  # and none of them is padding
    assert batch.cache.layers[0].keys.shape[2] == batch.mask.shape[1]


def test_an_unknown_adapter_is_refused_before_prefill(smollm: TransformersGenerator) -> None:
    batch = ContinuousBatch(smollm)
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        batch.add(0, ModelInput([{"role": "user", "content": "Hi"}], "nope"), GenerationConfig())
    assert len(batch) == 0


def test_seeded_sampling_does_not_depend_on_batch_mates(smollm: TransformersGenerator) -> None:
    sampled = GenerationConfig(max_new_tokens=8, temperature=0.9, seed=7)
    row = ModelInput([{"role": "user", "content": "Tell me a fact."}])

    def run(mates: int) -> str:
        batch = ContinuousBatch(smollm)
        for j in range(mates):
            batch.add(
                100 + j,
                ModelInput([{"role": "user", "content": f"Count to {j + 3}."}]),
                GenerationConfig(max_new_tokens=8),
            )
        out = {}
        for ev in batch.add(0, row, sampled):
            out[ev.row_id] = ev
        while 0 not in out or not out[0].finished:
            for ev in batch.step():
                if ev.row_id == 0:
                    out[0] = ev
        return out[0].text

    assert run(0) == run(2)


def test_a_row_whose_adapter_is_unloaded_is_dropped_alone(smollm: TransformersGenerator, random_lora: Path) -> None:
    smollm.add_adapter("cb-gone", random_lora)
    batch = ContinuousBatch(smollm)
    try:
        batch.add(0, ModelInput([{"role": "user", "content": "Count to ten."}]), GenerationConfig(max_new_tokens=20))
        batch.add(
            1,
            ModelInput([{"role": "user", "content": "Count to five."}], "cb-gone"),
            GenerationConfig(max_new_tokens=20),
        )
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            smollm.delete_adapter("cb-gone")
    events = {ev.row_id: ev for ev in batch.step()}
    assert events[1].finished and "unloaded" in (events[1].error or "")
    assert events[0].error is None and len(batch) == 1  # the other row goes on


def test_a_step_that_gives_way_leaves_the_batch_as_it_was(smollm: TransformersGenerator, two_adapters: None) -> None:
    """Steps abandoned at different decoder layers (every other step, on gathered adapters and
    none) cost nothing but time: the cache keeps its width, no row advances, and the greedy
    answers are still the one-at-a-time ones."""
    configs = [GenerationConfig(max_new_tokens=n) for n in (10, 14, 6, 12)]
    alone = [smollm.generate([r.messages], config=c, adapter=r.adapter)[0] for r, c in zip(ROWS, configs, strict=True)]
    batch = ContinuousBatch(smollm)
    final: dict[int, str] = {}
    for i, row in enumerate(ROWS):
        final.update({ev.row_id: ev.text for ev in batch.add(i, row, configs[i]) if ev.finished})
    gave_way, step = 0, 0
    while len(batch):
        checks = [0]
        at_layer = 1 + 7 * step % smollm.base_model.config.num_hidden_layers  # a different layer each time

        def interrupt(give: bool = step % 2 == 1, at: int = at_layer, seen: list[int] = checks) -> bool:
            seen[0] += 1
            return give and seen[0] == at

        width, lengths = batch.mask.shape[1], [r.length for r in batch.rows]
        events = batch.step(interrupt=interrupt)
        if batch.interrupted:
            gave_way += 1
            assert events == [] and checks[0] == at_layer
            assert {cached.keys.shape[2] for cached in batch.cache.layers} == {width}
            assert [r.length for r in batch.rows] == lengths and batch.mask.shape[1] == width
        final.update({ev.row_id: ev.text for ev in events if ev.finished})
        step += 1
    assert gave_way >= 5
    assert [final[i] for i in range(len(ROWS))] == alone


def test_a_step_through_pefts_adapter_names_never_gives_way(smollm: TransformersGenerator, two_adapters: None) -> None:
    """PEFT's per-row hooks are not removed when a pass raises, so that path runs whole."""
    gathered, smollm.gathered_lora = smollm.gathered_lora, None
    try:
        batch = ContinuousBatch(smollm)
        batch.add(0, ROWS[0], GenerationConfig(max_new_tokens=5))
        batch.add(1, ROWS[2], GenerationConfig(max_new_tokens=5))
        width = batch.mask.shape[1]
        events = batch.step(interrupt=lambda: True)
        assert not batch.interrupted and len(events) == 2 and batch.mask.shape[1] == width + 1
        assert [len(r.tokens) for r in batch.rows] == [2, 2]
    finally:
        smollm.gathered_lora = gathered
