# -*- test-case-name: tests.test_simulation_cli -*-
"""
C{python -m llmux.simulation ...}: the same as C{llmux simulate ...}, for a
source tree that is not installed.
"""

from .cli import main

raise SystemExit(main())
