"""Session fixture for the model tests: a random LoRA (the generator is in tests/conftest.py).

Tests that load adapters must delete them again, since the generator is shared by the
whole session.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tailorlm.models import TransformersGenerator


@pytest.fixture(scope="session")
def random_lora(smollm: TransformersGenerator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA (r=2 on q_proj, v_proj) with random B matrices, so it changes outputs.

    It is built on a fresh copy of the weights: ``get_peft_model`` injects layers in
    place and must not touch the shared generator's model.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm.path, local_files_only=True)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # peft 0.21 reads an attribute transformers 5 deprecated
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        peft_model = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("lora") / "random-r2"
    peft_model.save_pretrained(out)
    return out
