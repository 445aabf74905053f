"""BentoML 1.2's new-style services: ``@bentoml.service`` on a class, ``@bentoml.api`` on its methods.

tiffin serves such a class as a classic service with one runner: the runner (named
after the service) builds an instance of the class in each runner worker, so
``tiffin scale``, adaptive batching (``@bentoml.api(batchable=True)``) and the runner
metrics apply; each ``@bentoml.api`` method becomes an API at ``/<method>`` that takes
its parameters as a JSON object, as BentoML's new-style APIs do, and answers
``text/plain`` for a method annotated ``-> str`` and JSON otherwise. A method that is a
generator (or an async generator) streams from the runner worker: items annotated ``str``
(``Generator[str, None, None]``, ``AsyncGenerator[str, None]``) as Server-Sent Events,
others as JSON lines.
"""

import inspect
import typing

from ._errors import BadInput
from .io import JSON, Text, _loads
from ._runner import Runnable, Runner, _MethodConfig
from ._service import Service


class _ApiMark:
    def __init__(self, func, name, route, batchable, batch_dim):
        self.func = func
        self.name = name or func.__name__
        self.route = route
        self.batchable = batchable
        self.batch_dim = batch_dim


def api(func=None, *, name=None, route=None, batchable=False, batch_dim=0, max_batch_size=None, max_latency_ms=None, **_ignored):
    """``@bentoml.api`` (or ``@bentoml.api(batchable=True, route=...)``) on a service class's method."""

    def mark(f):
        f.__tiffin_api__ = _ApiMark(f, name, route, batchable, batch_dim)
        return f

    return mark(func) if func is not None else mark


class _Params(JSON):
    """A new-style API's input: its parameters as one JSON object, checked against the signature."""

    def __init__(self, func):
        super().__init__()
        sig = inspect.signature(func)
        hints = _hints(func)
        self._params = [
            p.replace(annotation=hints.get(n, p.annotation))
            for n, p in sig.parameters.items()
            if n != "self"
        ]
        # Arrays travel as nested lists and become numpy arrays after the check.
        self._arrays = {p.name for p in self._params if _is_ndarray(p.annotation)}
        self._model = None
        try:
            import pydantic

            fields = {
                p.name: (
                    list if p.name in self._arrays
                    else p.annotation if p.annotation is not inspect.Parameter.empty
                    else object,
                    p.default if p.default is not inspect.Parameter.empty else ...,
                )
                for p in self._params
            }
            self._model = pydantic.create_model(f"{func.__name__}_input", **fields)
        except Exception:
            self._model = None

    def schema(self):
        if self._model is not None:
            return self._model.model_json_schema()
        return {"type": "object"}

    def from_http(self, body, content_type):
        value = _loads(body)
        if not isinstance(value, dict):
            raise BadInput("the body must be a JSON object of the API's parameters")
        if self._model is not None:
            try:
                checked = self._model.model_validate(value)
            except Exception as e:
                raise BadInput(str(e)) from None
            value = {p.name: getattr(checked, p.name) for p in self._params}
        if self._arrays:
            import numpy as np

            for name in self._arrays & value.keys():
                value[name] = np.asarray(value[name])
        return value


def _hints(func):
    """The annotations of ``func`` resolved: ``from __future__ import annotations``
    (as BentoML's quickstart writes) leaves them as strings."""
    import typing

    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}


def _streams(func):
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


def _is_ndarray(annotation):
    return getattr(annotation, "__name__", "") == "ndarray" and getattr(annotation, "__module__", "") == "numpy"


def service(cls=None, *, name=None, workers=None, **_config):
    """``@bentoml.service`` (or ``@bentoml.service(name=..., workers=...)``) on a class."""

    def wrap(klass):
        marks = {n: getattr(v, "__tiffin_api__") for n, v in vars(klass).items() if hasattr(v, "__tiffin_api__")}
        if not marks:
            raise ValueError(f"@bentoml.service {klass.__name__} has no method marked @bentoml.api")

        def init(self):
            self.instance = klass()

        body = {"__init__": init}
        for attr, mark in marks.items():
            def call(self, *args, _attr=attr, **kwargs):
                return getattr(self.instance, _attr)(*args, **kwargs)

            call.__name__ = attr
            call.__tiffin_method__ = _MethodConfig(
                call, mark.batchable, mark.batch_dim, None, None, stream=_streams(mark.func)
            )
            body[attr] = call
        servable = type(klass.__name__, (Runnable,), body)
        service_name = name or klass.__name__
        runner = Runner(servable, name=service_name)
        svc = Service(service_name, runners=[runner])
        svc.inner = klass
        for attr, mark in marks.items():
            svc.apis[mark.name] = _api_of(svc, runner, attr, mark)
        return svc

    return wrap(cls) if cls is not None else wrap


def _api_of(svc, runner, attr, mark):
    from ._service import InferenceAPI

    method = getattr(runner, attr)
    params = _Params(mark.func)
    first = params._params[0].name if params._params else None
    returns = _hints(mark.func).get("return", inspect.signature(mark.func).return_annotation)
    if _streams(mark.func):
        # A generator method: its items stream from the runner worker, each sent as soon
        # as the method yields it; str items as Server-Sent Events, others as JSON lines.
        args = typing.get_args(returns)
        output = Text() if args and args[0] is str else JSON()

        async def streamed(values):
            async for item in method.async_stream(**values):
                yield item

        return InferenceAPI(streamed, params, output, mark.name, mark.route)
    output = Text() if returns is str else JSON()

    async def handler(values):
        if mark.batchable and first is not None and len(values) == 1:
            return await method.async_run(values[first])
        return await method.async_run(**values)

    api = InferenceAPI(handler, params, output, mark.name, mark.route)
    return api
