"""Run a kopf daemon without a finalizer on the objects it watches.

kopf puts a finalizer on every object that has a daemon, so that it can stop the
daemon before the object goes. Then, with the operator uninstalled, deleting an
app or the CRD hangs on it. The children are owned through ownerReferences and
the garbage collector removes them; the daemon notices the app left the index and
ends itself. A finalizer left by an older operator is removed by kopf on resume.

kopf has no public switch for this, so the daemon's registered handler is replaced
in kopf's (private) registry by a copy that does not require one. This module is
the only place that touches kopf's internals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf


def without_finalizer(handler_fn: Any) -> None:
    """Let the daemon registered for ``handler_fn`` run without a finalizer."""
    registry = kopf.get_default_registry()
    spawning = registry._spawning
    for i, handler in enumerate(spawning._handlers):
        if handler.fn is handler_fn:
            spawning._handlers[i] = dataclasses.replace(handler, requires_finalizer=False)
