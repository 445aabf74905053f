"""Streaming declarations: generator APIs and runnable methods say they stream, in a format
their output can take, and a pulled generator is closed as BentoML users expect."""

import asyncio
import pickle
import threading
import typing
import unittest

import tiffin as bentoml
from tiffin._worker import _Pulled
from tiffin.io import JSON, Image, Text


class Words(bentoml.Runnable):
    @bentoml.Runnable.method
    def words(self, n):
        yield from range(n)

    @bentoml.Runnable.method
    async def awords(self, n):
        for i in range(n):
            yield i

    @bentoml.Runnable.method
    def one(self, n):
        return n


class Declarations(unittest.TestCase):
    def test_a_generator_api_streams_text_as_events_and_json_as_lines(self):
        svc = bentoml.Service("s")

        @svc.api(input=Text(), output=Text())
        async def tokens(text):
            yield text

        @svc.api(input=Text(), output=JSON())
        def points(text):
            yield {"x": 1}

        @svc.api(input=Text(), output=Text(content_type="text/event-stream"))
        def events(text):
            yield text

        @svc.api(input=Text(), output=Text())
        def whole(text):
            return text

        apis = {a["name"]: a for a in svc.describe()["apis"]}
        self.assertEqual(apis["tokens"]["stream"], "sse")
        self.assertEqual(apis["points"]["stream"], "ndjson")
        self.assertEqual(apis["events"]["stream"], "sse")
        self.assertNotIn("stream", apis["whole"])

    def test_a_generator_api_with_an_output_that_cannot_stream_is_refused_naming_it(self):
        svc = bentoml.Service("s")
        with self.assertRaisesRegex(TypeError, "Text .* or JSON .*not Image"):

            @svc.api(input=Text(), output=Image())
            def pictures(text):
                yield text

    def test_generator_methods_say_they_stream_and_refuse_run_and_batching(self):
        runner = bentoml.Runner(Words, name="words")
        methods = {m["name"]: m for m in runner.describe()["methods"]}
        self.assertTrue(methods["words"]["stream"])
        self.assertTrue(methods["awords"]["stream"])
        self.assertNotIn("stream", methods["one"])
        with self.assertRaisesRegex(TypeError, "async_stream"):
            runner.words.run(3)
        with self.assertRaisesRegex(ValueError, "cannot be batchable"):

            class Batched(bentoml.Runnable):
                @bentoml.Runnable.method(batchable=True)
                def words(self, n):
                    yield n

    def test_a_new_style_generator_method_streams_through_its_runner(self):
        @bentoml.service
        class Streamer:
            @bentoml.api
            def tokens(self, n: int) -> typing.Generator[str, None, None]:
                yield from map(str, range(n))

            @bentoml.api
            async def points(self, n: int) -> typing.AsyncGenerator[dict, None]:
                yield {"n": n}

        described = Streamer.describe()
        apis = {a["name"]: a for a in described["apis"]}
        self.assertEqual((apis["tokens"]["stream"], apis["points"]["stream"]), ("sse", "ndjson"))
        self.assertTrue(all(m["stream"] for m in described["runners"][0]["methods"]))


class Pulling(unittest.TestCase):
    def test_closing_a_pulled_generator_raises_generator_exit_at_its_yield(self):
        seen = []

        def gen():
            try:
                yield 1
                yield 2
            except GeneratorExit:
                seen.append("exit")
                raise
            finally:
                seen.append("finally")

        pulled = _Pulled(gen(), None)
        self.assertEqual(pickle.loads(pulled.pull()), 1)
        pulled.close()
        self.assertEqual(seen, ["exit", "finally"])

    def test_an_async_generator_is_pulled_on_its_loop_and_aclosed(self):
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        self.addCleanup(loop.close)
        self.addCleanup(thread.join)
        self.addCleanup(loop.call_soon_threadsafe, loop.stop)
        seen = []

        async def agen():
            try:
                yield "a"
                await asyncio.sleep(0)
                yield "b"
            finally:
                seen.append("finally")

        pulled = _Pulled(agen(), loop)
        self.assertEqual(pickle.loads(pulled.pull()), "a")
        pulled.close()
        self.assertEqual(seen, ["finally"])
        ended = _Pulled(agen(), loop)
        self.assertEqual([ended.pull() is None for _ in range(3)], [False, False, True])


if __name__ == "__main__":
    unittest.main()
