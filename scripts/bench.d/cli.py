"""How scripts/bench calls its Python files: `FILE.py COMMAND ARGS...` runs
the function of that name (dashes for underscores) with ARGS as strings and
prints what it returns, if anything."""

import sys


def run(*commands):
    by_name = {f.__name__.replace("_", "-"): f for f in commands}
    if len(sys.argv) < 2 or sys.argv[1] not in by_name:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(by_name)}}} ARGS...")
    out = by_name[sys.argv[1]](*sys.argv[2:])
    if out is not None:
        print(out)
