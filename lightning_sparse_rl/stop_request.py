"""A process-wide request to stop a run at its next safe point (set by a SIGINT/SIGTERM handler).

Signals are delivered to the process, so the request is process-wide too. The loops that can run for a
long time check it at their safe points and raise :class:`StopRequested` there:

* ``"warm-up"``: before each random env step that fills the replay buffer;
* ``"training"``: before each training env step (the previous step, its updates and its logging are done);
* ``"evaluation"``: before each evaluation episode (the evaluation is then repeated from its start on resume).

Whoever handles the exception (``RunCheckpoints``) writes a checkpoint of the state at that point.
"""

from __future__ import annotations

import signal

_received: signal.Signals | None = None


class StopRequested(Exception):
    """A stop signal was honoured at a safe point of ``phase``; the run can be resumed from here.

    Attributes:
        signal: the signal that asked for the stop.
        phase: ``"warm-up"``, ``"training"`` or ``"evaluation"``.
        checkpoint: the checkpoint written for the resume, once one is (``None`` before).

    """

    def __init__(self, received: signal.Signals, phase: str) -> None:
        super().__init__(f"stopped by {received.name} during {phase}")
        self.signal = received
        self.phase = phase
        self.checkpoint: str | None = None


def request_stop(received: signal.Signals) -> None:
    """Ask the running loops to stop at their next safe point."""
    global _received
    _received = received


def stop_requested() -> signal.Signals | None:
    """The signal that asked for a stop, or ``None``."""
    return _received


def clear_stop_request() -> None:
    """Forget a stop request (a new run starts)."""
    global _received
    _received = None


def raise_if_stop_requested(phase: str) -> None:
    """Raise :class:`StopRequested` for ``phase`` when a stop was requested."""
    if _received is not None:
        raise StopRequested(_received, phase)
