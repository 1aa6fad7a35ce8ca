"""Safe reading of the one kind of bare pickle the project accepts: a data file of plain containers and numpy arrays.

CIFAR-10's published ``cifar-10-batches-py`` files are pickled dicts (``data``: a uint8 array, ``labels``: a list),
and a pickle names the Python callables that rebuild it: a file from a download or a copied folder could name
``os.system`` as easily as ``numpy.ndarray``. So this module unpickles with an allow-list: plain containers,
strings, numbers and bytes (no global needed), and numpy's own array and dtype reconstruction; any other global
refuses the file in one sentence before anything of it runs. It is the data side of the project's one safe loader;
checkpoints are read by :mod:`experiments.run.checkpoints` (torch's weights-only unpickler). Standard library only
(numpy is imported by the unpickling itself), so validation, which counts a CIFAR copy's labels, stays torch-free.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from experiments.errors import DataFileError

#: (module, name) a data pickle may name: numpy's array reconstruction (protocol 2 as published, and the
#: buffer form of protocol 5), under numpy 1.x's and 2.x's module names, and ``_codecs.encode``, with which
#: Python 3's protocol 2 spells bytes. Nothing here runs code of the file's choosing.
ALLOWED_GLOBALS = frozenset(
    (module, name)
    for package in ("numpy.core", "numpy._core")
    for module, name in ((f"{package}.multiarray", "_reconstruct"), (f"{package}.multiarray", "scalar"),
                         (f"{package}.numeric", "_frombuffer"))
) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _RefusedGlobal(pickle.UnpicklingError):
    """The file names a callable outside :data:`ALLOWED_GLOBALS` (raised before it is called)."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"global '{module}.{name}' is not allowed")
        return super().find_class(module, name)


def load_data_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """The pickled containers and arrays of ``path``; :class:`DataFileError` for a file that names anything else,
    or that is not a readable pickle. ``encoding``: how Python 2 strings are read (CIFAR's were written by
    Python 2; latin1 keeps their bytes)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return _ArrayUnpickler(handle, encoding=encoding).load()
    except _RefusedGlobal as err:
        raise DataFileError(path, f"unpickling it would call code other than numpy's array reconstruction ({err})",
                            "use the dataset's published files, or remove this one") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as err:
        raise DataFileError(path, f"it is not a readable pickle ({type(err).__name__}: {err})",
                            "replace it with the dataset's published file") from None
