"""orch: on SIGUSR1, dump every thread's Python stack into `<job dir>/stacks/<pid>`, which the hang report
collects (the log stays the program's own, so a dump does not look like progress).

Placed first on the job's PYTHONPATH; it then loads whatever sitecustomize it shadows, so a conda env's own keeps
working.
"""

import faulthandler
import importlib
import os
import signal
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _register_stack_dumps() -> None:
    """Route this process's SIGUSR1 stack dump to its own file (re-run in forked children: their own pid)."""
    try:
        folder = os.path.join(os.path.dirname(_here), "stacks")
        os.makedirs(folder, exist_ok=True)
        dump = open(os.path.join(folder, str(os.getpid())), "a", buffering=1)
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
        globals()["_dump_file"] = dump  # faulthandler keeps only the descriptor: the file object must live on
    except (AttributeError, ValueError, RuntimeError, OSError):  # no SIGUSR1 here, or the folder is not writable
        pass


_register_stack_dumps()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_register_stack_dumps)
_path, _self = sys.path[:], sys.modules.pop("sitecustomize", None)
try:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    importlib.import_module("sitecustomize")
except ImportError:
    sys.modules["sitecustomize"] = _self
finally:
    sys.path[:] = _path
