"""orch: on SIGUSR1, dump every thread's Python stack to stderr (the job log), for hang reports.

Placed first on the job's PYTHONPATH; it then loads whatever sitecustomize it shadows, so a conda env's own keeps
working.
"""

import faulthandler
import importlib
import os
import signal
import sys

try:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
except (AttributeError, ValueError, RuntimeError):  # no SIGUSR1 on this platform, or stderr unusable
    pass

_here = os.path.dirname(os.path.abspath(__file__))
_path, _self = sys.path[:], sys.modules.pop("sitecustomize", None)
try:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    importlib.import_module("sitecustomize")
except ImportError:
    sys.modules["sitecustomize"] = _self
finally:
    sys.path[:] = _path
