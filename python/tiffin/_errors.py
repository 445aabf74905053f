"""Errors a handler can raise to choose the HTTP status (BentoML's ``bentoml.exceptions``)."""


class Unsupported(ImportError):
    """A name of BentoML's that tiffin does not serve.

    An ImportError, not an AttributeError: ``from bentoml.io import X`` turns an
    AttributeError into a generic "cannot import name", losing which name tiffin lacks.
    """


class BadInput(Exception):
    """The request body is not acceptable input: answered with 400."""

    status = 400


def status_of(exc):
    """The HTTP status an exception stands for: a runner's own, 400 for bad input, else 500."""
    from ._native import RunnerError

    if isinstance(exc, RunnerError) and len(exc.args) == 2:
        return int(exc.args[0]), str(exc.args[1])
    code = getattr(exc, "error_code", None)
    if code is not None:
        return int(code), str(exc)
    if isinstance(exc, BadInput):
        return 400, str(exc)
    return 500, f"{type(exc).__name__}: {exc}"
