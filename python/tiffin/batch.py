"""Adaptive batching on the Python side: many calls' arguments as one, and back.

tiffin's runner worker groups the calls of a batchable method (its adaptive
batcher decides how many); the runnable then gets each positional argument
concatenated along the method's input ``batch_dim``, as BentoML's containers do:
numpy arrays with ``numpy.concatenate``, pandas frames with ``pandas.concat``,
lists by extension. Its answer is split back along the output ``batch_dim`` by each
call's size.
"""


def _size(value, dim):
    if isinstance(value, list):
        return len(value)
    if hasattr(value, "shape"):
        return value.shape[dim]
    raise TypeError(f"cannot batch a {type(value).__name__}: batchable methods take arrays, frames or lists")


def _concat(values, dim):
    first = values[0]
    if isinstance(first, list):
        return [item for v in values for item in v]
    if type(first).__module__.startswith("pandas"):
        import pandas

        return pandas.concat(values, axis=dim)
    import numpy

    return numpy.concatenate(values, axis=dim)


def _split(value, sizes, dim):
    if isinstance(value, tuple):
        parts = [_split(v, sizes, dim) for v in value]
        return [tuple(p[i] for p in parts) for i in range(len(sizes))]
    total = _size(value, dim)
    if total != sum(sizes):
        raise ValueError(f"the batch method answered {total} rows for {sum(sizes)} inputs")
    out, start = [], 0
    for n in sizes:
        if isinstance(value, list):
            out.append(value[start : start + n])
        elif hasattr(value, "iloc"):
            out.append(value.iloc[start : start + n])
        else:
            index = [slice(None)] * value.ndim
            index[dim] = slice(start, start + n)
            out.append(value[tuple(index)])
        start += n
    return out


def run(func, calls, batch_dim):
    """Runs ``func`` once on ``calls`` (a list of ``(args, kwargs)``); one result per call."""
    in_dim, out_dim = batch_dim
    if len(calls) == 1 or any(kwargs for _, kwargs in calls):
        return [func(*args, **kwargs) for args, kwargs in calls]
    arity = {len(args) for args, _ in calls}
    if len(arity) != 1:
        return [func(*args) for args, _ in calls]
    sizes = [_size(args[0], in_dim) for args, _ in calls]
    columns = list(zip(*(args for args, _ in calls)))
    merged = [_concat(list(col), in_dim) for col in columns]
    return _split(func(*merged), sizes, out_dim)
