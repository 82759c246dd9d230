# -*- test-case-name: tests.test_settings -*-
"""
The configuration the running service uses now.

Every part that reads settings at request time (the proxy, llmux's own
endpoints, the access rules) holds this one object and reads it per request,
so a reload is one L{Settings.swap} (plus what the switcher must do about
the models that changed) and no part keeps a stale copy.
"""

from __future__ import annotations

from collections.abc import Mapping

from .config import Config, ModelConfig, modelNames

__all__ = ["Settings"]


class Settings:
    """
    The current L{Config}, and the tables derived from it.

    @ivar config: the configuration in force.
    @ivar names: every name a request may use (models and their aliases), to
        its model.
    """

    config: Config
    names: Mapping[str, ModelConfig]

    def __init__(self, config: Config) -> None:
        self.swap(config)

    def swap(self, config: Config) -> None:
        """
        Put C{config} in force for every request from now on.
        """
        self.config = config
        self.names = modelNames(config.models)

    def model(self, name: str) -> ModelConfig | None:
        """
        The model a request's C{name} (a model's name or an alias) routes to.
        """
        return self.names.get(name)
