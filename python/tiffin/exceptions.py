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


class InvalidArgument(BentoMLException):
    error_code = HTTPStatus.BAD_REQUEST


class NotFound(BentoMLException):
    error_code = HTTPStatus.NOT_FOUND


class Forbidden(BentoMLException):
    error_code = HTTPStatus.FORBIDDEN


class Unauthorized(BentoMLException):
    error_code = HTTPStatus.UNAUTHORIZED


class Conflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT


class UnprocessableEntity(BentoMLException):
    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class TooManyRequests(BentoMLException):
    error_code = HTTPStatus.TOO_MANY_REQUESTS


class InternalServerError(BentoMLException):
    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


class ServiceUnavailable(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE
