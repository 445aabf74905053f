"""A gRPC client that is not tiffin's: grpcio, with the message types
discovered through server reflection (no generated stubs, no .proto file).

Usage: grpc_client.py --sentiment HOST:PORT --custom HOST:PORT

--sentiment is `tiffin serve-grpc sentiment_analyzer --enable-reflection`;
--custom is the custom_service example under `serve-grpc --enable-reflection`
with CUSTOM_BROKEN_RUNNER=1 (its `fail` API's model raises, its `broken` API's
runner never loads). Prints one line per check; exits 1 on the first failure.
"""

import argparse
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "bentoml.grpc.v1.BentoService"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print(f"ok: {msg}", flush=True)


class Bento:
    """BentoService reached through reflection-discovered descriptors."""

    def __init__(self, addr):
        self.channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        db = ProtoReflectionDescriptorDatabase(self.channel)
        self.services = list(db.get_services())
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName(SERVICE)
        self.methods = {}
        for name in ("Call", "ServiceMetadata"):
            m = svc.FindMethodByName(name)
            req = message_factory.GetMessageClass(m.input_type)
            resp = message_factory.GetMessageClass(m.output_type)
            stub = self.channel.unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString,
            )
            self.methods[name] = (req, stub)
        self.Request = self.methods["Call"][0]

    def call(self, request):
        return self.methods["Call"][1](request, timeout=10)

    def metadata(self):
        req, stub = self.methods["ServiceMetadata"]
        return stub(req(), timeout=10)

    def health(self, service=""):
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    def expect_error(self, request, code, needle, what):
        try:
            resp = self.call(request)
        except grpc.RpcError as e:
            check(
                e.code() == code,
                f"{what}: status {e.code().name} (want {code.name}); details: {e.details()!r}",
            )
            check(
                needle in (e.details() or ""),
                f"{what}: details {e.details()!r} mention {needle!r}",
            )
            return
        fail(f"{what}: expected {code.name}, got a response {resp}")


def sentiment_checks(addr):
    b = Bento(addr)
    check(SERVICE in b.services, f"reflection lists {SERVICE}: {b.services}")
    check("grpc.health.v1.Health" in b.services, "reflection lists grpc.health.v1.Health")
    check(b.health() == health_pb2.HealthCheckResponse.SERVING, "overall health is SERVING")
    check(
        b.health(SERVICE) == health_pb2.HealthCheckResponse.SERVING,
        f"{SERVICE} health is SERVING",
    )

    req = b.Request(api_name="analysis")
    req.text.value = "I love this product!"
    resp = b.call(req)
    check(resp.WhichOneof("content") == "json", f"analysis answers with json content: {resp}")
    got = json_format.MessageToDict(resp.json)
    check(got == {"is_positive": True}, f"analysis of a happy text is {got}")

    req = b.Request(api_name="analysis")
    req.serialized_bytes = "This is terrible and I hate it.".encode()
    got = json_format.MessageToDict(b.call(req).json)
    check(got == {"is_positive": False}, f"serialized_bytes content works too: {got}")

    meta = b.metadata()
    apis = {a.name: a for a in meta.apis}
    check(meta.name == "sentiment_analyzer", f"ServiceMetadata names the service: {meta.name}")
    check("analysis" in apis, f"ServiceMetadata lists analysis: {list(apis)}")
    check(
        apis["analysis"].input.descriptor_id == "bentoml.io.Text"
        and apis["analysis"].output.descriptor_id == "bentoml.io.JSON",
        "analysis is described as Text -> JSON",
    )

    req = b.Request(api_name="no_such_api")
    req.text.value = "hello"
    b.expect_error(req, grpc.StatusCode.NOT_FOUND, "no_such_api", "unknown api_name")

    for field in ("ndarray", "dataframe", "series", "file", "multipart"):
        req = b.Request(api_name="analysis")
        getattr(req, field).SetInParent()
        b.expect_error(req, grpc.StatusCode.INVALID_ARGUMENT, f"'{field}'", f"{field} content")

    req = b.Request(api_name="analysis")
    req.json.string_value = "I love this product!"
    b.expect_error(req, grpc.StatusCode.INVALID_ARGUMENT, "'json'", "json content to a Text API")

    req = b.Request(api_name="analysis")
    b.expect_error(req, grpc.StatusCode.INVALID_ARGUMENT, "no content", "a request without content")

    req = b.Request(api_name="analysis")
    req.serialized_bytes = b"\xff\xfe"
    b.expect_error(req, grpc.StatusCode.INVALID_ARGUMENT, "UTF-8", "invalid UTF-8 text")

    # Still healthy after every bad request.
    req = b.Request(api_name="analysis")
    req.text.value = "What a wonderful day"
    check(
        json_format.MessageToDict(b.call(req).json) == {"is_positive": True},
        "still serving after the bad requests",
    )


def custom_checks(addr):
    b = Bento(addr)
    check(
        b.health() == health_pb2.HealthCheckResponse.NOT_SERVING,
        "health is NOT_SERVING while a runner cannot load",
    )

    req = b.Request(api_name="double")
    req.json.number_value = 21
    got = json_format.MessageToDict(b.call(req).json)
    check(got == {"result": 42.0}, f"double(21) over json content is {got}")

    req = b.Request(api_name="fail")
    req.text.value = "anything"
    b.expect_error(req, grpc.StatusCode.INTERNAL, "model exploded", "runner failure")

    req = b.Request(api_name="broken")
    req.text.value = "ping"
    b.expect_error(req, grpc.StatusCode.UNAVAILABLE, "flaky", "no runner worker available")

    req = b.Request(api_name="double")
    req.json.string_value = "not a number"
    b.expect_error(req, grpc.StatusCode.INVALID_ARGUMENT, "number", "handler rejects bad input")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sentiment", required=True)
    p.add_argument("--custom", required=True)
    args = p.parse_args()
    sentiment_checks(args.sentiment)
    custom_checks(args.custom)
    print("ALL CHECKS PASSED", flush=True)


if __name__ == "__main__":
    main()
