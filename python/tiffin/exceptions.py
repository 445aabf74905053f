"""``bentoml.exceptions``: errors a handler raises to answer with their HTTP status.

As in BentoML, each carries an ``error_code`` (an ``http.HTTPStatus``); the client
gets that status with ``{"error": "<message>"}``.
"""

from http import HTTPStatus

from ._errors import BadInput as _BadInputBase

__all__ = [
    "BentoMLException",
    "BadInput",
    "InvalidArgument",
    "NotFound",
    "Forbidden",
    "Unauthorized",
    "Conflict",
    "UnprocessableEntity",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
]


class BentoMLException(Exception):
    """The base of every error with an HTTP status (500 unless a subclass says otherwise)."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message="", error_code=None):
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = HTTPStatus(error_code)


class BadInput(BentoMLException, _BadInputBase):
    error_code = HTTPStatus.BAD_REQUEST


def _with_status(name, status):
    """A ``BentoMLException`` subclass named as BentoML names it, answering ``status``."""
    return type(
        name,
        (BentoMLException,),
        {"error_code": status, "__module__": __name__, "__doc__": f"Answers {status.value} {status.phrase}."},
    )


# BentoML's classes, each only a name for its status.
InvalidArgument = _with_status("InvalidArgument", HTTPStatus.BAD_REQUEST)
NotFound = _with_status("NotFound", HTTPStatus.NOT_FOUND)
Forbidden = _with_status("Forbidden", HTTPStatus.FORBIDDEN)
Unauthorized = _with_status("Unauthorized", HTTPStatus.UNAUTHORIZED)
Conflict = _with_status("Conflict", HTTPStatus.CONFLICT)
UnprocessableEntity = _with_status("UnprocessableEntity", HTTPStatus.UNPROCESSABLE_ENTITY)
TooManyRequests = _with_status("TooManyRequests", HTTPStatus.TOO_MANY_REQUESTS)
InternalServerError = _with_status("InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR)
ServiceUnavailable = _with_status("ServiceUnavailable", HTTPStatus.SERVICE_UNAVAILABLE)
