"""The non-personalized baseline: phi(x, u) = x."""

from dataclasses import dataclass

from tailorlm.personalize.base import BasePersonalizer, MethodConfig
from tailorlm.personalize.registry import register_method
from tailorlm.personalize.types import Contribution, Query

__all__ = ["IdentityConfig", "IdentityPersonalizer"]


@dataclass
class IdentityConfig(MethodConfig):
    """No settings: the identity method ignores the user."""


class IdentityPersonalizer(BasePersonalizer[IdentityConfig]):
    """Returns the task prompt alone; every table's baseline row."""

    name = "identity"
    config_cls = IdentityConfig

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        return Contribution(method=self.name)


register_method(name="identity", config_cls=IdentityConfig, method_cls=IdentityPersonalizer, aliases={"identity": {}})
