# -*- test-case-name: tests.test_hookconfig -*-
"""
C{backend:} presets: the hooks of common inference servers, as config keys
(SPEC section 10).

A preset is a table of the keys a user would otherwise write; the model's
own keys are laid over it, so any of them can be overridden. They are
parsed and checked like the user's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BACKENDS", "presetKeys"]

#: The C{backend:} values llmux knows.
BACKENDS = ("vllm", "sglang")


def presetKeys(backend: str, sleepLevel: int) -> dict[str, Any]:
    """
    The hooks C{backend} fills in.

    @param sleepLevel: vLLM's sleep level: 1 offloads the weights to CPU
        memory; 2 discards them, so waking reloads them and resets the prefix
        cache.
    """
    if backend == "vllm":
        wake: list[dict[str, Any]] = [{"method": "POST", "path": "/wake_up"}]
        if sleepLevel == 2:
            wake += [
                {
                    "method": "POST",
                    "path": "/collective_rpc",
                    "json": {"method": "reload_weights"},
                },
                {"method": "POST", "path": "/reset_prefix_cache"},
            ]
        return {
            "wake": wake,
            "sleep": [{"method": "POST", "path": f"/sleep?level={sleepLevel}"}],
            # /health answers while asleep too: a sleeping server is not
            # awake, and must not be adopted as awake.
            "alive": [
                {"method": "GET", "path": "/health"},
                {
                    "method": "GET",
                    "path": "/is_sleeping",
                    "expect_json": {"is_sleeping": False},
                },
            ],
        }
    if backend == "sglang":
        return {
            "wake": [
                {"method": "POST", "path": "/resume_memory_occupation", "json": {}}
            ],
            "sleep": [
                {"method": "POST", "path": "/release_memory_occupation", "json": {}}
            ],
            "alive": [{"method": "GET", "path": "/health"}],
        }
    raise ValueError(f"unknown backend {backend!r}")
