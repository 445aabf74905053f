"""BentoML 1.2's own Python client against a tiffin server (tests/it/bentoml_client.rs).

The client discovers the server from /docs.json alone (info.title, the
operations tagged "Service APIs", x-bentoml-name, x-bentoml-io-descriptor);
this script uses it unchanged and prints what it saw and answered as JSON,
for the Rust test to assert on.

usage: bentoml_client.py URL CALLS BAD_CALLS
  URL        http://127.0.0.1:PORT
  CALLS      JSON {"api": [input, ...]}: each input is sent with every client
             flavour (Client, SyncHTTPClient, AsyncHTTPClient, attribute call)
  BAD_CALLS  JSON {"api": [input, ...]}: inputs the server must refuse
"""

import asyncio
import json
import sys
from urllib.parse import urlparse

import bentoml
from bentoml.client import AsyncHTTPClient, SyncHTTPClient


def main() -> None:
    url, calls, bad_calls = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    parsed = urlparse(url)
    # Polls /readyz, as a user's script would before its first call.
    bentoml.client.Client.wait_until_server_ready(parsed.hostname, parsed.port, timeout=30)

    client = bentoml.client.Client.from_url(url)
    sync = SyncHTTPClient.from_url(url)
    out = {
        "title": sync._svc.name,
        "endpoints": sorted(client.endpoints),
        "routes": {name: api.route for name, api in sync._svc.apis.items()},
        "descriptors": {
            name: [type(api.input).__name__, type(api.output).__name__]
            for name, api in sync._svc.apis.items()
        },
        "answers": {},
        "attribute_answers": {},
        "async_answers": {},
        "errors": {},
    }
    for api, inputs in calls.items():
        out["answers"][api] = [client.call(api, inp) for inp in inputs]
        out["attribute_answers"][api] = [getattr(sync, api)(inp) for inp in inputs]

    async def run_async() -> dict:
        answers = {}
        async_client = await AsyncHTTPClient.from_url(url)
        try:
            for api, inputs in calls.items():
                answers[api] = [await async_client.call(api, inp) for inp in inputs]
        finally:
            await async_client.close()
        return answers

    out["async_answers"] = asyncio.run(run_async())

    for api, inputs in bad_calls.items():
        out["errors"][api] = []
        for inp in inputs:
            try:
                answer = sync.call(api, inp)
                out["errors"][api].append({"unexpected_answer": answer})
            except bentoml.exceptions.BentoMLException as e:
                out["errors"][api].append({"error": str(e)})
    sync.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
