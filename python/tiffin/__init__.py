"""tiffin's Python services: BentoML 1.2's classic service API, served by tiffin.

A BentoML service file runs unchanged: inside tiffin's processes ``import bentoml``
is this package (``_alias.py``). The surface is what the classic API's service files
use: ``Service``, ``Runnable``, ``Runner``, ``bentoml.io`` and ``bentoml.metrics``;
any other ``bentoml.<name>`` fails when the file is imported, naming it.

    tiffin serve-http service.py:svc

See README.md (Python services) and python/README.md.
"""

from . import io, metrics
from ._runner import Runnable, Runner
from ._service import Context, Service

__version__ = "0.1.0"

__all__ = ["Service", "Runnable", "Runner", "Context", "io", "metrics"]

_SUPPORTED = ", ".join(__all__)


def __getattr__(name):
    # Module-level __getattr__ (PEP 562): a name BentoML has and tiffin does not
    # fails at the service file's import, naming it, not at its first request.
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"bentoml.{name} is not supported by tiffin (supported: {_SUPPORTED})"
    )
