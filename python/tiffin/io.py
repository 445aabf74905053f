"""``bentoml.io``: how a request body becomes a handler's argument and its result a body.

Each descriptor decodes with what BentoML 1.2's does (``bentoml/_internal/io_descriptors``)
and publishes the same ``to_spec()`` in the OpenAPI document, so BentoML's client
rebuilds the API. A body a descriptor cannot decode is a 400 naming the problem.
"""

import dataclasses
import io as _io
import json as _json
from email.parser import BytesParser

from ._errors import BadInput, Unsupported

__all__ = ["Text", "JSON", "NumpyNdarray", "Image", "File", "Multipart"]


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    raise Unsupported(f"bentoml.io.{name} is not supported by tiffin (supported: {', '.join(__all__)})")


class IODescriptor:
    """What every descriptor answers: its body kind, spec, decoder and encoder."""

    kind = "bytes"
    media_type = "*/*"

    def spec(self):
        return {
            "kind": self.kind,
            "media_type": self.media_type,
            "schema": self.schema(),
            "bentoml": self.to_spec(),
        }

    def schema(self):
        return {"type": "string", "format": "binary"}

    def to_spec(self):
        return {"id": f"bentoml.io.{type(self).__name__}"}

    def from_http(self, body, content_type):
        raise NotImplementedError

    def to_http(self, value):
        raise NotImplementedError

    def response_type(self, value):
        """The answer's content type; None: what the body kind says (text, JSON, octet-stream)."""
        return None

    def stream_as(self):
        """How a generator API with this output streams: ``sse`` (Server-Sent Events, a text
        item per event), ``ndjson`` (a JSON value per line), or None: it cannot stream."""
        return {"text": "sse", "json": "ndjson"}.get(self.kind)

    def send_item(self, sink, value):
        """Sends one item a generator API yielded (``_worker.py``)."""
        if self.kind == "text":
            sink.send_text(value if isinstance(value, str) else self.to_http(value).decode("utf-8"))
        else:
            sink.send_json(self.to_http(value))


class Text(IODescriptor):
    kind = "text"
    media_type = "text/plain"

    def __init__(self, content_type="text/plain"):
        # BentoML 1.2's argument: "text/event-stream" for a generator's answer. tiffin
        # writes a generator's items as Server-Sent Events whichever is given.
        self._content_type = content_type

    def schema(self):
        return {"type": "string"}

    def from_http(self, body, content_type):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"the body is not UTF-8 text: {e}") from None

    def to_http(self, value):
        return str(value).encode("utf-8")


def _default(o):
    """JSON for what BentoML's default encoder also writes: pydantic models, dataclasses, numpy."""
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _dumps(value):
    # NaN and infinities are not JSON: refused (a 500), as BentoML's encoder does.
    return _json.dumps(value, default=_default, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _loads(body):
    try:
        return _json.loads(body)
    except ValueError as e:
        raise BadInput(f"the body is not valid JSON: {e}") from None


class JSON(IODescriptor):
    kind = "json"
    media_type = "application/json"

    def __init__(self, pydantic_model=None, validate_json=None, json_encoder=None):
        self._model = pydantic_model
        self._encoder = json_encoder

    def schema(self):
        if self._model is not None:
            return self._model.model_json_schema()
        return {"type": "object"}

    def to_spec(self):
        return {
            "id": "bentoml.io.JSON",
            "args": {
                "has_pydantic_model": self._model is not None,
                "has_json_encoder": self._encoder is not None,
            },
        }

    def from_http(self, body, content_type):
        value = _loads(body)
        if self._model is None:
            return value
        try:
            return self._model.model_validate(value)
        except Exception as e:  # pydantic.ValidationError names each field at fault
            raise BadInput(str(e)) from None

    def to_http(self, value):
        if self._encoder is not None:
            return _json.dumps(value, cls=self._encoder).encode("utf-8")
        return _dumps(value)


class NumpyNdarray(IODescriptor):
    kind = "json"
    media_type = "application/json"

    def __init__(self, dtype=None, enforce_dtype=False, shape=None, enforce_shape=False):
        self._dtype = dtype
        self._enforce_dtype = enforce_dtype
        self._shape = tuple(shape) if shape is not None else None
        self._enforce_shape = enforce_shape

    def schema(self):
        return {"type": "array", "items": {}}

    def to_spec(self):
        import numpy as np

        return {
            "id": "bentoml.io.NumpyNdarray",
            "args": {
                "dtype": None if self._dtype is None else np.dtype(self._dtype).name,
                "shape": None if self._shape is None else list(self._shape),
                "enforce_dtype": self._enforce_dtype,
                "enforce_shape": self._enforce_shape,
            },
        }

    def from_http(self, body, content_type):
        import numpy as np

        value = _loads(body)
        try:
            array = np.array(value, dtype=self._dtype)
        except (TypeError, ValueError) as e:
            raise BadInput(f"the body is not an array of {self._dtype or 'numbers'}: {e}") from None
        if self._shape is not None:
            # As BentoML: the array takes the declared shape when it can (a flat
            # row for shape (-1, 3)); if it cannot, an enforced shape is a 400
            # and an unenforced one keeps the array as sent.
            try:
                array = array.reshape(self._shape)
            except ValueError:
                if self._enforce_shape:
                    raise BadInput(f"expected an array of shape {self._shape}, got {array.shape}") from None
        return array

    def to_http(self, value):
        import numpy as np

        return _dumps(np.asarray(value).tolist())


def _parts(body, content_type):
    """The parts of a multipart/form-data body: name -> (filename, content type, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser().parsebytes(head + body)
    if not message.is_multipart():
        raise BadInput("the body is not a multipart/form-data body")
    parts = {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        parts[name] = (
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True) or b"",
        )
    return parts


def _is_multipart(content_type):
    return (content_type or "").lower().startswith("multipart/form-data")


def _first_file(body, content_type):
    """A file upload's bytes: the first part of a form (``curl -F f=@x``), else the body."""
    if not _is_multipart(content_type):
        return body, content_type
    parts = _parts(body, content_type)
    if not parts:
        raise BadInput("the multipart body has no part")
    _, ctype, data = next(iter(parts.values()))
    return data, ctype


class Image(IODescriptor):
    media_type = "image/*"

    def __init__(self, pilmode=None, mime_type="image/jpeg", allowed_mime_types=None):
        self._pilmode = pilmode
        self._mime_type = mime_type
        self._allowed = allowed_mime_types

    def to_spec(self):
        return {
            "id": "bentoml.io.Image",
            "args": {
                "pilmode": self._pilmode,
                "mime_type": self._mime_type,
                "allowed_mime_types": self._allowed or ["image/png", "image/jpeg"],
            },
        }

    def from_http(self, body, content_type):
        from PIL import Image as PILImage

        data, _ = _first_file(body, content_type)
        try:
            image = PILImage.open(_io.BytesIO(data))
            image.load()
        except Exception as e:
            raise BadInput(f"the body is not an image PIL can read: {e}") from None
        if self._pilmode is not None:
            image = image.convert(self._pilmode)
        return image

    def response_type(self, value):
        return self._mime_type

    def to_http(self, value):
        from PIL import Image as PILImage

        if not isinstance(value, PILImage.Image):
            import numpy as np

            value = PILImage.fromarray(np.asarray(value))
        out = _io.BytesIO()
        fmt = {"image/png": "PNG", "image/jpeg": "JPEG"}.get(self._mime_type, "PNG")
        value.save(out, format=fmt)
        return out.getvalue()


class File(IODescriptor):
    def __init__(self, kind="binaryio", mime_type=None):
        self._kind = kind
        self._mime_type = mime_type

    def to_spec(self):
        return {"id": "bentoml.io.File", "args": {"kind": self._kind, "mime_type": self._mime_type}}

    def from_http(self, body, content_type):
        data, _ = _first_file(body, content_type)
        return _io.BytesIO(data)

    def response_type(self, value):
        return self._mime_type or "application/octet-stream"

    def to_http(self, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if hasattr(value, "read"):
            return value.read()
        raise TypeError(f"File output must be bytes or a file-like object, not {type(value).__name__}")


class Multipart(IODescriptor):
    media_type = "multipart/form-data"

    def __init__(self, **inputs):
        if not inputs:
            raise ValueError("Multipart() needs at least one named input")
        self._inputs = inputs

    def schema(self):
        return {
            "type": "object",
            "properties": {name: d.schema() for name, d in self._inputs.items()},
        }

    def to_spec(self):
        return {
            "id": "bentoml.io.Multipart",
            "args": {name: d.to_spec() for name, d in self._inputs.items()},
        }

    def from_http(self, body, content_type):
        if not _is_multipart(content_type):
            raise BadInput(f"expected a multipart/form-data body, got {content_type or 'no content type'}")
        parts = _parts(body, content_type)
        missing = [n for n in self._inputs if n not in parts]
        if missing:
            raise BadInput(f"the multipart body lacks the parts {missing}")
        return {n: d.from_http(parts[n][2], parts[n][1]) for n, d in self._inputs.items()}

    def response_type(self, value):
        return "multipart/form-data; boundary=tiffin-multipart-boundary"

    def to_http(self, value):
        boundary = "tiffin-multipart-boundary"
        out = []
        for name, d in self._inputs.items():
            out.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode())
            out.append(d.to_http(value[name]))
            out.append(b"\r\n")
        out.append(f"--{boundary}--\r\n".encode())
        return b"".join(out)
