"""Per-user / persona / global DPO adapters as a personalization method ("dpo").

Aliases ``dpo-user``, ``dpo-persona`` and ``dpo-global`` fix the scope. The trainer
(``train.py``, TRL's DPOTrainer) runs offline: ``tailorlm train --method dpo``.
"""

from tailorlm.personalize.dpo.config import DpoMethodConfig, DpoTrainConfig
from tailorlm.personalize.dpo.method import DpoPersonalizer
from tailorlm.personalize.registry import register_method

__all__ = ["DpoMethodConfig", "DpoPersonalizer", "DpoTrainConfig"]

register_method(
    name="dpo",
    config_cls=DpoMethodConfig,
    method_cls=DpoPersonalizer,
    trainer="tailorlm.personalize.dpo.train:train_dpo",
    aliases={f"dpo-{scope}": {"scope": scope} for scope in ("user", "persona", "global")},
)
