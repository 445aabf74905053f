"""The Python half of tiffin's worker processes (``python -m tiffin __worker ...``).

An API server keeps one asyncio loop on a thread of its own: tiffin's Rust server
queues each request in the ``Inbox`` the loop watches, and the loop runs the
handler (``async def`` on the loop, plain ``def`` on a thread pool, as BentoML
does), then answers through the request's ``Reply``. The Rust server runs on the
main thread without the GIL. A runner worker loads the runnable once and calls it,
under the GIL, when tiffin's runner worker hands it a call or a batch.
"""

import asyncio
import functools
import inspect
import itertools
import json
import os
import pickle
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from . import _native, batch
from ._alias import install
from ._errors import status_of
from ._load import load_service
from ._request import run_handler
from ._service import Context

_HOST = None


def api_host():
    if _HOST is None:
        raise RuntimeError("async_run() is called from API handlers, in a tiffin API server")
    return _HOST


class _ApiHost:
    def __init__(self, svc):
        self.apis = svc.apis
        self.calls = {}
        # Ids of the waits in `calls`: runner calls (`_runner.py`) and streams.
        self.call_ids = itertools.count()
        self.tasks = set()
        # The unanswered requests' tasks, by the number the inbox gave them.
        self.requests = {}
        self.inbox = _native.Inbox()
        # Plain `def` handlers mostly wait on `runner.m.run()` without the GIL:
        # as many threads as anyio gives BentoML's sync handlers (40).
        self.pool = ThreadPoolExecutor(max_workers=40, thread_name_prefix="tiffin-handler")
        self.loop = asyncio.new_event_loop()
        if hasattr(asyncio, "eager_task_factory"):
            # Python 3.12+: a handler runs at once up to its first await,
            # without a trip round the loop.
            self.loop.set_task_factory(asyncio.eager_task_factory)
        self.loop.add_reader(self.inbox.fileno(), self.drain)
        threading.Thread(target=self.loop.run_forever, name="tiffin-asyncio", daemon=True).start()

    def drain(self):
        for item in self.inbox.take():
            kind = item[0]
            if kind == 1:
                future = self.calls.get(item[1])
                if future is not None and not future.done():
                    future.set_result((item[2], item[3]))
            elif kind == 3:
                # The client went away before the answer: the handler is cancelled
                # (asyncio.CancelledError at its await), and its runner call with it.
                task = self.requests.pop(item[1], None)
                if task is not None:
                    task.cancel()
            elif kind == 0:
                request = item[5]
                task = self.loop.create_task(self.handle(*item[1:5]))
                if not task.done():
                    self.requests[request] = task
                    task.add_done_callback(lambda _, r=request: self.requests.pop(r, None))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                task = self.loop.create_task(self.handle_stream(*item[1:]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    @staticmethod
    def arguments(api, body, content_type):
        """The handler's arguments for a request: the decoded body, and BentoML's ``ctx``."""
        value = api.input.from_http(body, content_type)
        args, kwargs = ((), dict(value)) if api.by_keyword else ((value,), {})
        ctx = None
        if api.takes_context:
            ctx = Context(content_type)
            if api.by_keyword:
                kwargs["ctx"] = ctx
            else:
                args = (value, ctx)
        return args, kwargs, ctx

    async def wait(self, start):
        """Starts a wait with ``start(call_id)`` and awaits its ``(ok, payload)`` from the inbox."""
        call_id = next(self.call_ids)
        future = self.loop.create_future()
        self.calls[call_id] = future
        try:
            start(call_id)
            return await future
        finally:
            self.calls.pop(call_id, None)

    async def handle_stream(self, name, body, content_type, sink):
        """A generator handler's request: each item goes to ``sink`` when the answer has room.

        The generator is pulled only then (the client's reading paces it). When the client
        went away, it is closed instead: ``GeneratorExit`` at the ``yield`` it waits at.
        """
        api = self.apis[name]
        try:
            args, kwargs, _ = self.arguments(api, body, content_type)
            items = api.func(*args, **kwargs)
            await self.pump(api, items, sink)
        except BaseException as e:  # the stream's error ending, or the request's status
            status, message = status_of(e)
            sink.fail(status, message)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise

    async def pump(self, api, items, sink):
        """Sends the generator's items as the answer makes room, waiting on the loop.

        A plain generator's ``next`` runs on the handler threads, one item at a time (as
        Starlette iterates one for BentoML), so a stream waiting for its client holds no
        thread and never the GIL.
        """
        in_pool = api.streams != "async"
        while True:
            room = sink.room_now()
            if room is None:
                room, _ = await self.wait(sink.wait_room)
            if not room:
                if in_pool:
                    await self.loop.run_in_executor(self.pool, items.close)
                else:
                    await items.aclose()
                return
            if in_pool:
                item = await self.loop.run_in_executor(self.pool, _next_or_end, items)
            else:
                item = await _anext_or_end(items)
            if item is _END:
                sink.close()
                return
            api.output.send_item(sink, item)

    async def handle(self, name, body, content_type, reply):
        api = self.apis[name]
        try:
            args, kwargs, ctx = self.arguments(api, body, content_type)
            if api.is_async:
                out = await api.func(*args, **kwargs)
            else:
                cancel = _native.CallCancel()
                call = functools.partial(run_handler, cancel, api.func, *args, **kwargs)
                try:
                    out = await self.loop.run_in_executor(self.pool, call)
                except asyncio.CancelledError:
                    # The thread runs on; its runner call ends, raising CancelledError there.
                    cancel.set()
                    raise
            encoded = api.output.to_http(out)
            if ctx is None:
                reply.send(encoded, 200, api.output.response_type(out))
            else:
                r = ctx.response
                headers = [(str(k), str(v)) for k, v in r.headers.items()]
                set_type = next((v for k, v in headers if k.lower() == "content-type"), None)
                reply.send(
                    encoded,
                    int(r.status_code),
                    set_type or api.output.response_type(out),
                    [(k, v) for k, v in headers if k.lower() != "content-type"],
                )
        except BaseException as e:  # every failure is an answer; the loop goes on
            status, message = status_of(e)
            reply.fail(status, message)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise


_END = object()


def _next_or_end(items):
    # StopIteration cannot cross a Future: the end is a value.
    return next(items, _END)


async def _anext_or_end(items):
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return _END


class _RunnerHost:
    """What tiffin's runner worker calls: ``load`` once, then ``call`` / ``call_batch``."""

    def __init__(self, runner):
        self.runner = runner
        self.instance = None
        self.loop = None
        self.lock = threading.Lock()

    def load(self):
        try:
            self.instance = self.runner.runnable_class(**self.runner.runnable_init_params)
        except Exception as e:
            raise RuntimeError(
                f"runner '{self.runner.name}': {self.runner.runnable_class.__name__}.__init__ failed:\n"
                + user_traceback(e)
            ) from None

    def call(self, method, payload):
        args, kwargs = pickle.loads(payload)
        out = getattr(self.instance, method)(*args, **kwargs)
        return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)

    def call_stream(self, method, payload):
        """A call of a generator method: its items, pulled one at a time by the worker."""
        args, kwargs = pickle.loads(payload)
        items = getattr(self.instance, method)(*args, **kwargs)
        if inspect.isasyncgen(items):
            return _Pulled(items, self.async_loop())
        return _Pulled(iter(items), None)

    def async_loop(self):
        """The loop async generator methods run on: a thread of its own, started on first use."""
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="tiffin-asyncio", daemon=True).start()
            return self.loop

    def call_batch(self, method, payloads):
        calls = [pickle.loads(p) for p in payloads]
        config = self.runner.methods[method]
        outs = batch.run(getattr(self.instance, method), calls, config.batch_dim)
        return [pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in outs]


class _Pulled:
    """One call of a generator method, as tiffin's runner worker pulls it (``host.rs``).

    Each ``pull`` runs the generator to its next ``yield`` and answers the item pickled,
    or None at its end; an async generator runs on the host's loop while this thread
    waits without the GIL. ``close`` is the caller going away: ``GeneratorExit`` at the
    ``yield`` the generator waits at, so its ``finally`` blocks run.
    """

    def __init__(self, items, loop):
        self.items = items
        self.loop = loop

    def pull(self):
        try:
            if self.loop is None:
                item = next(self.items)
            else:
                item = asyncio.run_coroutine_threadsafe(_anext(self.items), self.loop).result()
        except (StopIteration, StopAsyncIteration):
            return None
        return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self):
        if self.loop is None:
            close = getattr(self.items, "close", None)
            if close is not None:
                close()
        else:
            asyncio.run_coroutine_threadsafe(_aclose(self.items), self.loop).result()


# run_coroutine_threadsafe takes coroutines, which an async generator's awaitables are not.
async def _anext(items):
    return await items.__anext__()


async def _aclose(items):
    await items.aclose()


def _option(argv, name):
    for i, a in enumerate(argv[:-1]):
        if a == name:
            return argv[i + 1]
    return None


def user_traceback(exc):
    """The traceback of ``exc`` from the user's code: without importlib's and tiffin's own
    frames, so its last lines name the service file and the line that failed."""
    here = os.path.dirname(os.path.abspath(__file__))
    te = traceback.TracebackException.from_exception(exc)
    kept = [
        f
        for f in te.stack
        if not f.filename.startswith(("<frozen", here))
        and os.sep + "importlib" + os.sep not in f.filename
    ]
    te.stack = traceback.StackSummary.from_list(kept)
    return "".join(te.format())


def _load(locator):
    install()
    try:
        return load_service(locator)
    except BaseException as e:
        sys.stderr.write(user_traceback(e))
        sys.stderr.flush()
        os._exit(1)


def describe_main(locator):
    """``python -m tiffin __describe LOCATOR``: the service's description as JSON."""
    svc = _load(locator)
    sys.stdout.write(json.dumps(svc.describe()))
    sys.stdout.flush()
    return 0


def worker_main(argv):
    """``python -m tiffin __worker ROLE ...``: runs one of tiffin's workers of the service."""
    global _HOST
    locator = _option(argv, "--python")
    if locator is None:
        sys.stderr.write("tiffin: a Python worker needs --python LOCATOR\n")
        return 2
    # A worker's output goes to the supervisor's terminal or log: line by line,
    # as a user's print() in a handler expects, not in 8 KiB blocks.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    svc = _load(locator)
    description = json.dumps(svc.describe())
    code = 0
    try:
        if argv[0] == "api-server":
            _HOST = _ApiHost(svc)
            _native.worker(argv, description, inbox=_HOST.inbox)
        else:
            name = _option(argv, "--runner")
            runner = next((r for r in svc.runners if r.name == name), None)
            if runner is None:
                sys.stderr.write(f"tiffin: service '{svc.name}' has no runner '{name}'\n")
                return 2
            _native.worker(argv, description, runnable=_RunnerHost(runner))
    except RuntimeError as e:
        sys.stderr.write(f"tiffin: error: {e}\n")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal interpreter exit: that would wait for handler threads still
    # running when the Rust worker has already drained and answered.
    os._exit(code)
