"""The non-personalized baseline: phi(x, u) = x."""

from dataclasses import dataclass

from tailorlm.personalize.base import (
    BasePersonalizer,
    Contribution,
    MethodConfig,
    Query,
    register_method,
)

__all__ = ["IdentityConfig", "IdentityPersonalizer"]


@dataclass
class IdentityConfig(MethodConfig):
    """No settings: the identity method ignores the user."""


class IdentityPersonalizer(BasePersonalizer):
    """Returns the task prompt alone; every table's baseline row."""

    name = "identity"
    config_cls = IdentityConfig

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        return Contribution(method=self.name)


register_method(name="identity", config_cls=IdentityConfig, method_cls=IdentityPersonalizer)
