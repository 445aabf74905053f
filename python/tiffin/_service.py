"""``bentoml.Service`` and ``@svc.api``: a service's name, runners and APIs."""

import inspect
import re

from .io import IODescriptor

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class Context:
    """What BentoML hands a handler that takes a ``ctx`` argument (request and response)."""

    class _Response:
        def __init__(self):
            self.status_code = 200
            self.headers = {}
            self.cookies = []

    def __init__(self, content_type):
        self.request = type("Request", (), {"headers": {"content-type": content_type or ""}})()
        self.response = Context._Response()
        self.state = {}


class InferenceAPI:
    def __init__(self, func, input, output, name, route):
        self.func = func
        self.input = input
        self.output = output
        self.name = name
        self.route = route
        self.is_async = inspect.iscoroutinefunction(func)
        # A generator (``yield``) or async generator (``async def`` with ``yield``)
        # answers a stream, each item sent as soon as it is yielded (docs/python.md).
        self.streams = (
            "async" if inspect.isasyncgenfunction(func) else "sync" if inspect.isgeneratorfunction(func) else None
        )
        if self.streams and output.stream_as() is None:
            raise TypeError(
                f"API '{name}' is a generator: its items stream as Text (Server-Sent Events) "
                f"or JSON (JSON lines), not {type(output).__name__}"
            )
        params = list(inspect.signature(func).parameters)
        from .io import Multipart

        # A Multipart input reaches the handler as keyword arguments, one per
        # part, as in BentoML; a `ctx` parameter is BentoML's request context.
        self.by_keyword = isinstance(input, Multipart)
        self.takes_context = "ctx" in params or (not self.by_keyword and len(params) >= 2)

    def describe(self):
        described = {
            "name": self.name,
            "route": self.route,
            # BentoML's descriptors read any body whatever its content type
            # (`curl -d` sends a form type): tiffin's front door lets it through.
            "input": dict(self.input.spec(), any_content_type=True),
            "output": self.output.spec(),
        }
        if self.streams:
            described["stream"] = self.output.stream_as()
        return described


class Service:
    """``bentoml.Service(name, runners=[...])``."""

    def __init__(self, name, runners=None, models=None):
        if not _NAME.match(name):
            raise ValueError(f"invalid service name {name!r}: letters, digits, '_' and '-'")
        self.name = name
        self.runners = list(runners or [])
        self.apis = {}
        seen = set()
        for r in self.runners:
            if r.name in seen:
                raise ValueError(f"service '{name}' has two runners named '{r.name}'")
            seen.add(r.name)

    def api(self, input, output, name=None, doc=None, route=None):
        """Declares an API (``@svc.api(input=Text(), output=JSON())``)."""
        for side, d in (("input", input), ("output", output)):
            if not isinstance(d, IODescriptor):
                raise TypeError(f"@svc.api {side}= must be a bentoml.io descriptor, not {d!r}")

        def declare(func):
            api_name = name or func.__name__
            if api_name in self.apis:
                raise ValueError(f"service '{self.name}' has two APIs named '{api_name}'")
            self.apis[api_name] = InferenceAPI(func, input, output, api_name, route)
            return func

        return declare

    def on_startup(self, func):
        return func

    def on_shutdown(self, func):
        return func

    def describe(self):
        return {
            "name": self.name,
            "version": None,
            "runners": [r.describe() for r in self.runners],
            "apis": [a.describe() for a in self.apis.values()],
        }
