"""``python -m tiffin``: the entry of tiffin's Python worker processes.

``__describe LOCATOR`` and ``__worker ...`` are what the tiffin supervisor runs;
anything else is handed to the ``tiffin`` command installed beside this Python.
"""

import os
import shutil
import sys
import sysconfig


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["__describe"] and len(argv) == 2:
        from ._worker import describe_main

        return describe_main(argv[1])
    if argv[:1] == ["__worker"]:
        from ._worker import worker_main

        return worker_main(argv[1:])
    binary = os.path.join(sysconfig.get_path("scripts"), "tiffin")
    if not os.path.isfile(binary):
        binary = shutil.which("tiffin")
    if binary is None:
        sys.stderr.write("tiffin: the tiffin command is not installed beside this Python\n")
        return 1
    os.execv(binary, [binary, *argv])


if __name__ == "__main__":
    sys.exit(main())
