"""The process guard: a daemon's child processes never outlive it.

    subprocess.Popen(argv, preexec_fn=die_with_parent)   # SIGKILLed if the daemon dies

A provider's jobs and a lab's reruns of them run as children of a daemon that accounts for them;
a daemon killed outright (SIGKILL, OOM) cannot stop them, so the kernel does
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in a child between fork and exec
    """SIGKILL this child when the thread that started it dies (``PR_SET_PDEATHSIG``): a job,
    or a lab's rerun of one, never outlives a killed daemon that could not account for it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


__all__ = ["die_with_parent"]
