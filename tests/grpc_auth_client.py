"""Bearer tokens on tiffin's gRPC front door, seen by a client that is not
tiffin's: grpcio, with the token in the `authorization` metadata and the
message types discovered through server reflection (no generated stubs).

Usage: grpc_auth_client.py --addr HOST:PORT --every TOKEN --slow-only TOKEN --wrong TOKEN

The server is the custom_service example under `serve-grpc --enable-reflection`
with `api_server.auth.tokens_file` holding TOKEN (every API) and
`TOKEN slow` (the `slow` API only), and `public_docs` left false. Prints one
line per check; exits 1 on the first failure. tests/it/auth.rs runs it and
then checks the counts of the refusals made here, so each refusal is made
exactly once.
"""

import argparse
import collections
import sys

import grpc

# The sibling client's reporting (tests/grpc_client.py): same lines, same exit.
from grpc_client import check, fail  # noqa: E402
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "bentoml.grpc.v1.BentoService"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"




class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call of a channel."""

    def __init__(self, token):
        self.metadata = [("authorization", f"Bearer {token}")]

    def _with_token(self, d):
        metadata = list(d.metadata or []) + self.metadata
        return _Details(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)


def expect_refusal(what, code, call, secrets, needle=None):
    try:
        resp = call()
    except grpc.RpcError as e:
        details = e.details() or ""
        check(e.code() == code, f"{what}: {e.code().name} (want {code.name}); details {details!r}")
        check(all(s not in details for s in secrets), f"{what}: the details hold no token")
        if needle:
            check(needle in details, f"{what}: details {details!r} mention {needle!r}")
        return
    fail(f"{what}: expected {code.name}, got {resp}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--every", required=True)
    p.add_argument("--slow-only", required=True)
    p.add_argument("--wrong", required=True)
    args = p.parse_args()
    secrets = [args.every, args.slow_only, args.wrong]

    plain = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(plain).result(timeout=10)

    # Health is open to everyone (orchestrators' probes carry no token).
    health = health_pb2_grpc.HealthStub(plain)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    check(status == health_pb2.HealthCheckResponse.SERVING, "health answers without a token")

    # Reflection follows public_docs (false): closed without a token...
    raw_reflection = plain.stream_stream(REFLECTION)
    expect_refusal(
        "reflection without a token",
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: list(raw_reflection(iter([b""]), timeout=10)),
        secrets,
    )
    # ... and open with one, so the types are discovered through it.
    authed = grpc.intercept_channel(grpc.insecure_channel(args.addr), BearerToken(args.every))
    db = ProtoReflectionDescriptorDatabase(authed)
    services = list(db.get_services())
    check(SERVICE in services, f"reflection with a token lists {SERVICE}: {services}")
    method = DescriptorPool(db).FindServiceByName(SERVICE).FindMethodByName("Call")
    Request = message_factory.GetMessageClass(method.input_type)
    Response = message_factory.GetMessageClass(method.output_type)
    call = plain.unary_unary(
        f"/{SERVICE}/Call",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )

    def double(x, token=None):
        req = Request(api_name="double")
        req.json.number_value = x
        metadata = [("authorization", f"Bearer {token}")] if token else None
        return call(req, timeout=10, metadata=metadata)

    expect_refusal(
        "a call without a token",
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: double(1),
        secrets,
        "bearer token",
    )
    expect_refusal(
        "a call with a token that is not ours",
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: double(1, args.wrong),
        secrets,
        "not valid",
    )
    expect_refusal(
        "a call with a token for another API",
        grpc.StatusCode.PERMISSION_DENIED,
        lambda: double(1, args.slow_only),
        secrets,
        "'double'",
    )
    got = json_format.MessageToDict(double(21, args.every).json)
    check(got == {"result": 42.0}, f"the every-API token calls double(21): {got}")

    req = Request(api_name="slow")
    req.json.number_value = 1
    metadata = [("authorization", f"Bearer {args.slow_only}")]
    got = json_format.MessageToDict(call(req, timeout=10, metadata=metadata).json)
    check(got == {"slept_ms": 1.0}, f"the slow-only token calls slow: {got}")
    print("ALL CHECKS PASSED", flush=True)


if __name__ == "__main__":
    main()
