"""tiffin's Python services: BentoML 1.2's classic service API, served by tiffin.

A BentoML service file runs unchanged: inside tiffin's processes ``import bentoml``
is this package (``_alias.py``). The surface is what the classic API's service files
use: ``Service``, ``Runnable``, ``Runner``, ``bentoml.io`` and ``bentoml.metrics``;
any other ``bentoml.<name>`` fails when the file is imported, naming it.

    tiffin serve-http service.py:svc

See README.md (Python services) and python/README.md.
"""

from . import exceptions, io, metrics
from ._errors import Unsupported
from ._runner import Runnable, Runner
from ._service import Context, Service
from ._new import api, service

__version__ = "0.1.0"

__all__ = ["Service", "Runnable", "Runner", "Context", "io", "metrics", "exceptions", "service", "api"]

_SUPPORTED = ", ".join(__all__)


def _is_submodule(name):
    import importlib.util

    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def __getattr__(name):
    # Module-level __getattr__ (PEP 562): a name BentoML has and tiffin does not
    # fails at the service file's import, naming it, not at its first request.
    if name.startswith("_") or _is_submodule(name):
        # Dunders and tiffin's own submodules: `from . import batch` asks here
        # first and imports the submodule only on an AttributeError.
        raise AttributeError(name)
    raise Unsupported(f"bentoml.{name} is not supported by tiffin (supported: {_SUPPORTED})")
