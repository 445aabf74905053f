"""A small OTLP trace receiver for tests/it/tracing.rs: OTLP/HTTP, or OTLP/gRPC
with `--grpc` (the collector's TraceService over grpcio).

It decodes what tiffin exports with the official `opentelemetry-proto`
bindings (installed by scripts/setup/21-otel), so the test checks tiffin
against OpenTelemetry's own schema rather than against tiffin's encoder.

Prints `PORT <n>` once listening on 127.0.0.1, then one JSON object per
received span on stdout. Answers every export with an empty
ExportTraceServiceResponse. Exits when stdin closes (the test ended) or
after a bounded time.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

MAX_SECONDS = 300
MAX_BODY = 16 * 1024 * 1024
LOCK = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def emit(request, content_type):
    """Prints every span of one ExportTraceServiceRequest as a JSON line."""
    out = []
    for rs in request.resource_spans:
        resource = {a.key: value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    {
                        "content_type": content_type,
                        "resource": resource,
                        "scope": ss.scope.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "links": [
                            {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                            for l in span.links
                        ],
                        "status_code": span.status.code,
                    }
                )
    with LOCK:
        for span in out:
            print(json.dumps(span), flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if self.path != "/v1/traces" or length > MAX_BODY:
            self.send_response(404)
            self.end_headers()
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(length))
        emit(request, self.headers.get("Content-Type"))
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_grpc():
    """OTLP/gRPC: the collector's TraceService/Export, as a collector serves it."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            emit(request, "application/grpc")
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", MAX_BODY)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return port, lambda: server.stop(None)


def serve_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server.shutdown


def main():
    port, stop = serve_grpc() if "--grpc" in sys.argv[1:] else serve_http()
    print(f"PORT {port}", flush=True)
    # Stop when the test closes stdin, or at the latest after MAX_SECONDS.
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(MAX_SECONDS)
    stop()


if __name__ == "__main__":
    main()
