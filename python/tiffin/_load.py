"""Finding a service by BentoML's locator: ``module:attr``, ``path/file.py:attr`` or ``file.py``."""

import importlib
import os
import sys

from ._service import Service


def load_service(locator):
    target, _, attr = locator.partition(":")
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no service file {target} (from the locator '{locator}')")
        directory, filename = os.path.split(path)
        sys.path.insert(0, directory)
        module_name = filename[: -len(".py")]
    else:
        sys.path.insert(0, os.getcwd())
        module_name = target
    module = importlib.import_module(module_name)
    if attr:
        svc = module
        for part in attr.split("."):
            if not hasattr(svc, part):
                raise AttributeError(f"{module.__file__} has no attribute '{attr}' (from the locator '{locator}')")
            svc = getattr(svc, part)
    else:
        found = [v for v in vars(module).values() if isinstance(v, Service)]
        if len(found) != 1:
            raise LookupError(
                f"{module.__file__} defines {len(found)} services; name one as {target}:<attribute>"
            )
        svc = found[0]
    if not isinstance(svc, Service):
        raise TypeError(f"'{locator}' is a {type(svc).__name__}, not a bentoml.Service")
    return svc
