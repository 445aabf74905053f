"""Makes ``import bentoml`` mean tiffin inside tiffin's processes.

Only tiffin's own processes (``python -m tiffin``) install the alias, so a real
BentoML installed in the same environment is untouched everywhere else.
"""

import sys


def install():
    import tiffin
    from tiffin import exceptions, io, metrics

    sys.modules["bentoml"] = tiffin
    sys.modules["bentoml.io"] = io
    sys.modules["bentoml.metrics"] = metrics
    sys.modules["bentoml.exceptions"] = exceptions
