"""The request a plain ``def`` handler's pool thread is serving, as its runner calls see it.

An API server runs a plain ``def`` handler on a thread of its pool (``_worker.py``).
When the request's client goes away, the handler's task is cancelled on the loop, but
the thread runs on: its ``runner.method.run()`` calls (``_runner.py``) wait on the
request's ``CallCancel``, which the loop sets then, so the call is dropped and
``asyncio.CancelledError`` raised in the handler (``python/src/call.rs``).
"""

import threading

_handler = threading.local()


def run_handler(cancel, func, *args, **kwargs):
    """Runs a plain ``def`` handler on a pool thread, its runner calls cancelled by ``cancel``."""
    _handler.cancel = cancel
    try:
        return func(*args, **kwargs)
    finally:
        _handler.cancel = None


def current_cancel():
    """The ``CallCancel`` of the request this thread serves, or None outside a handler."""
    return getattr(_handler, "cancel", None)
