"""SIGTERM/SIGINT as threading.Events, without the deadlock of setting an Event from a signal handler.

Python runs a signal handler in the main thread between two bytecodes, possibly while that thread is inside
`Event.wait` holding the Event's non-reentrant lock; `Event.set()` from the handler would then wait for itself
forever (measured: 4 hangs in 30 SIGTERMs to a process waiting in a loop of short waits). A kubelet would kill the
stuck sidecar only at the end of the grace period, without its final upload. So the handler hands `set()` to a
short-lived thread, which takes the lock as soon as the main thread lets go of it.
"""

from __future__ import annotations

import logging
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def set_on_signal(events: tuple[threading.Event, ...], log: logging.Logger, message: str) -> None:
    """On SIGTERM or SIGINT, log `message` (with %s for the signal's name) and set every event."""

    def set_all() -> None:
        for event in events:
            event.set()

    def on_signal(signum: int, frame: object) -> None:
        log.info(message, signal.Signals(signum).name)  # logging's handler locks are reentrant
        threading.Thread(target=set_all, name="stop-signal", daemon=True).start()

    for sig in SIGNALS:
        signal.signal(sig, on_signal)
