"""``bentoml.Runnable`` and ``bentoml.Runner``: the model, in runner workers of its own.

A runner's methods are called from handlers with ``runner.<method>.async_run(...)``
or ``.run(...)``. The arguments travel pickled (both ends are Python) through
tiffin's sockets to a runner worker, whose ``_RunnerHost`` (``_worker.py``) calls the
runnable. Calls of a batchable method are grouped by tiffin's adaptive batching; the
runnable gets them concatenated along ``batch_dim`` (``batch.py``), as in BentoML.
"""

import asyncio
import inspect
import pickle

from . import _native
from ._request import current_cancel

_PICKLE = pickle.HIGHEST_PROTOCOL


class _MethodConfig:
    def __init__(self, func, batchable, batch_dim, input_spec, output_spec, stream=None):
        self.func = func
        self.name = func.__name__
        self.batchable = batchable
        # A generator method streams its items (``runner.m.async_stream(...)``).
        if stream is None:
            stream = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        self.stream = bool(stream)
        if self.stream and batchable:
            raise ValueError(f"runnable method '{self.name}' is a generator: it streams, and cannot be batchable")
        if isinstance(batch_dim, int):
            batch_dim = (batch_dim, batch_dim)
        self.batch_dim = tuple(batch_dim)


class Runnable:
    """Base class of a model: its ``__init__`` loads it, its methods run it."""

    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = False

    @staticmethod
    def method(func=None, *, batchable=False, batch_dim=0, input_spec=None, output_spec=None):
        """Marks a method callable from handlers (``@bentoml.Runnable.method(batchable=True)``)."""

        def mark(f):
            f.__tiffin_method__ = _MethodConfig(f, batchable, batch_dim, input_spec, output_spec)
            return f

        return mark(func) if func is not None else mark

    @classmethod
    def _methods(cls):
        found = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                config = getattr(attr, "__tiffin_method__", None)
                if config is not None:
                    found[name] = config
        return found


def _api_host():
    # Imported on first use: _worker imports this module.
    from ._worker import api_host

    global _api_host
    _api_host = api_host
    return api_host()


class RunnerMethod:
    """``runner.<name>``: what a handler calls."""

    def __init__(self, runner, config):
        self.runner = runner
        self.name = config.name
        self.config = config

    def _one_result(self, how):
        if self.config.stream:
            raise TypeError(
                f"runner method '{self.runner.name}.{self.name}' is a generator: iterate "
                f"runner.{self.name}.async_stream(...) (or .stream(...)) instead of {how}"
            )

    def run(self, *args, **kwargs):
        """Calls the method and waits (from a plain ``def`` handler). When the request's
        client goes away meanwhile, the call is cancelled and ``asyncio.CancelledError``
        raised here."""
        self._one_result("run()")
        payload = pickle.dumps((args, kwargs), protocol=_PICKLE)
        out = _native.call_blocking(self.runner.name, self.name, payload, current_cancel())
        return pickle.loads(out)

    async def async_run(self, *args, **kwargs):
        """Calls the method (from an ``async def`` handler)."""
        self._one_result("async_run()")
        host = _api_host()
        payload = pickle.dumps((args, kwargs), protocol=_PICKLE)
        call_id = next(host.call_ids)
        future = asyncio.get_running_loop().create_future()
        host.calls[call_id] = future
        cancel = _native.CallCancel()
        try:
            _native.call(self.runner.name, self.name, payload, call_id, cancel)
            ok, out = await future
        except asyncio.CancelledError:
            # The handler's task was cancelled (its client went away): so is the call.
            cancel.set()
            raise
        finally:
            host.calls.pop(call_id, None)
        if ok:
            return pickle.loads(out)
        raise _native.RunnerError(*out)


    def _stream_of(self, args, kwargs):
        if not self.config.stream:
            raise TypeError(
                f"runner method '{self.runner.name}.{self.name}' is not a generator: call run() or async_run()"
            )
        return _native.stream(self.runner.name, self.name, pickle.dumps((args, kwargs), protocol=_PICKLE))

    async def async_stream(self, *args, **kwargs):
        """The items of a generator method, each as soon as the runner yields it
        (``async for token in runner.generate.async_stream(prompt)``, as in BentoML).
        Each item is asked for when the loop wants it; leaving the loop early (or the
        client hanging up) cancels the runner's call, whose generator is closed."""
        host = _api_host()
        stream = self._stream_of(args, kwargs)
        try:
            while True:
                ok, out = await host.wait(stream.next)
                if not ok:
                    raise _native.RunnerError(*out)
                if out is None:
                    return
                yield pickle.loads(out)
        finally:
            stream.close()

    def stream(self, *args, **kwargs):
        """``async_stream`` for a plain ``def`` handler: each item waited for without the GIL."""
        stream = self._stream_of(args, kwargs)
        try:
            while True:
                out = stream.next_blocking()
                if out is None:
                    return
                yield pickle.loads(out)
        finally:
            stream.close()


class Runner:
    """``bentoml.Runner(RunnableClass, name=..., max_batch_size=..., max_latency_ms=...)``."""

    def __init__(
        self,
        runnable_class,
        *,
        name=None,
        runnable_init_params=None,
        models=None,
        max_batch_size=None,
        max_latency_ms=None,
        method_configs=None,
        embedded=False,
        scheduling_strategy=None,
    ):
        if not (isinstance(runnable_class, type) and issubclass(runnable_class, Runnable)):
            raise TypeError(f"bentoml.Runner() takes a bentoml.Runnable subclass, not {runnable_class!r}")
        self.runnable_class = runnable_class
        self.name = (name or runnable_class.__name__).lower()
        self.runnable_init_params = dict(runnable_init_params or {})
        for key, value in (("max_batch_size", max_batch_size), ("max_latency_ms", max_latency_ms)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"runner '{self.name}': {key} must be a whole number of at least 1, got {value!r}")
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.methods = runnable_class._methods()
        if not self.methods:
            raise ValueError(
                f"runner '{self.name}': {runnable_class.__name__} has no method marked @bentoml.Runnable.method"
            )
        for method_name, config in self.methods.items():
            setattr(self, method_name, RunnerMethod(self, config))

    def describe(self):
        return {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "max_latency_ms": self.max_latency_ms,
            "methods": [
                dict({"name": n, "batchable": bool(c.batchable)}, **({"stream": True} if c.stream else {}))
                for n, c in self.methods.items()
            ],
        }
