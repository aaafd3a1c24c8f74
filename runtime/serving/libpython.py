"""Make PyTriton's Python backend stub load this interpreter's libpython, not the system's.

tritonserver runs each Python model in a ``triton_python_backend_stub`` process linked against
``libpython3.X.so.1.0``. The dynamic loader finds the system's copy first, and on an interpreter
built apart from it (pyenv, conda, some venvs) that copy does not match the modules the stub then
imports from this environment: it fails with ``'_thread.RLock' object has no attribute
'_recursion_count'``. PyTriton launches tritonserver with a copy of ``os.environ``, and the stub
inherits tritonserver's, so putting the interpreter's own LIBDIR first in ``LD_LIBRARY_PATH`` of
this process before the server starts is enough: no re-exec, and it works from the Python API too.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import MutableMapping

VARIABLE = "LD_LIBRARY_PATH"


def own_libdir() -> str | None:
    """The interpreter's LIBDIR when it holds its shared libpython (None for static builds)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not soname or not os.path.isfile(os.path.join(libdir, soname)):
        return None
    return libdir


def prefer_own_libpython(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Put ``own_libdir()`` first in ``LD_LIBRARY_PATH`` (``os.environ`` by default) unless it is
    there already; returns the directory added, or None when nothing changed."""
    environ = os.environ if environ is None else environ
    libdir = own_libdir()
    current = [part for part in environ.get(VARIABLE, "").split(os.pathsep) if part]
    if libdir is None or (current and os.path.realpath(current[0]) == os.path.realpath(libdir)):
        return None
    environ[VARIABLE] = os.pathsep.join([libdir, *current])
    return libdir
