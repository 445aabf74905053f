"""``bentoml.metrics``: Counter, Gauge, Histogram and Summary, as prometheus_client has them.

Each is a family in the process's Rust registry (``tiffin._native.Metric``), so the
supervisor's ``/metrics`` sums it over every API server and runner worker, next to
BentoML's default families.
"""

from ._native import Metric

from ._errors import Unsupported

__all__ = ["Counter", "Gauge", "Histogram", "Summary"]


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    raise Unsupported(f"bentoml.metrics.{name} is not supported by tiffin (supported: {', '.join(__all__)})")


class _Series:
    """One series of a family: the family and its label values."""

    __slots__ = ("_metric", "_values")

    def __init__(self, metric, values):
        self._metric = metric
        self._values = values

    def inc(self, amount=1):
        self._metric.inc(self._values, float(amount))

    def dec(self, amount=1):
        self._metric.dec(self._values, float(amount))

    def set(self, value):
        self._metric.set(self._values, float(value))

    def observe(self, amount):
        self._metric.observe(self._values, float(amount))


class _Family:
    _kind = ""

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", **kwargs):
        full = "_".join(p for p in (namespace, subsystem, name) if p)
        if unit and not full.endswith("_" + unit):
            full = f"{full}_{unit}"
        self._name = full
        self._labelnames = tuple(labelnames)
        self._metric = Metric(self._kind, full, documentation, list(self._labelnames), *self._extra(kwargs))
        self._unlabelled = _Series(self._metric, []) if not self._labelnames else None

    def _extra(self, kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unsupported arguments: {', '.join(kwargs)}")
        return ()

    def labels(self, *values, **labels):
        if values and labels:
            raise ValueError("labels() takes label values positionally or by name, not both")
        if labels:
            missing = set(self._labelnames) ^ set(labels)
            if missing:
                raise ValueError(f"{self._name}: wrong label names {sorted(missing)}; expected {list(self._labelnames)}")
            values = tuple(labels[n] for n in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: {len(values)} label values for labels {list(self._labelnames)}")
        return _Series(self._metric, [str(v) for v in values])

    def _series(self):
        if self._unlabelled is None:
            raise ValueError(f"{self._name} has labels {list(self._labelnames)}: call .labels(...) first")
        return self._unlabelled


class Counter(_Family):
    _kind = "counter"

    def inc(self, amount=1):
        self._series().inc(amount)


class Gauge(_Family):
    _kind = "gauge"

    def inc(self, amount=1):
        self._series().inc(amount)

    def dec(self, amount=1):
        self._series().dec(amount)

    def set(self, value):
        self._series().set(value)


class Histogram(_Family):
    _kind = "histogram"

    def _extra(self, kwargs):
        buckets = kwargs.pop("buckets", None)
        super()._extra(kwargs)
        if buckets is None:
            return (None,)
        # prometheus_client lets the last bucket be +Inf; the registry adds it itself.
        return ([float(b) for b in buckets if float(b) != float("inf")],)

    def observe(self, amount):
        self._series().observe(amount)


class Summary(_Family):
    _kind = "summary"

    def observe(self, amount):
        self._series().observe(amount)
