"""
Small helpers several test modules share: free ports and process checks.
"""

from __future__ import annotations

import os
import socket

__all__ = ["freePort", "isRunning"]


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def isRunning(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie.

    An orphaned grandchild is reaped by init, which in some containers never
    happens: a killed one then lingers as a zombie, which is dead all the same.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state not in ("Z", "X")
