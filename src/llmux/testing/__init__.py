"""Test helpers shipped with llmux, like C{treq.testing}: fake backends and hooks."""
