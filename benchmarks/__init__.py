"""livestream's benchmarks: reproducible comparisons, one command each.

Run them with ``python -m benchmarks`` (every benchmark, default settings) or
``python -m benchmarks NAME [OPTIONS...]`` (one benchmark; the options go to it;
``python -m benchmarks NAME --help`` lists them). ``python -m benchmarks --list``
shows what is available.

Adding a benchmark
------------------
Write a module ``benchmarks/bench_<name>.py`` that defines::

    DESCRIPTION = "one line shown by --list"           # optional
    def main(argv: list[str] | None = None) -> int | None: ...

(``main()`` without parameters also works: it then reads ``sys.argv``.)

It is found by its file name, so nothing else needs editing. A module that
lives elsewhere (or wants another name) can be added with :func:`register`.
Benchmarks write their results under :data:`RESULTS_DIR` (``benchmarks/results/``,
not committed); :func:`results_dir` creates it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

PREFIX = "bench_"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_registry: dict[str, str] = {}


def register(name: str, module: str) -> None:
    """Make ``module`` (a dotted import path) runnable as ``python -m benchmarks NAME``."""
    _registry[name] = module


def discover() -> dict[str, str]:
    """Every benchmark by name → module path: ``bench_*.py`` files here, then registered ones."""
    found = {
        info.name[len(PREFIX):]: f"{__name__}.{info.name}"
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith(PREFIX)
    }
    found.update(_registry)
    return dict(sorted(found.items()))


def load(name: str) -> ModuleType:
    """Import the benchmark called ``name``; ``KeyError`` if there is none."""
    modules = discover()
    if name not in modules:
        raise KeyError(f"no benchmark named {name!r}; available: {', '.join(modules) or 'none'}")
    return importlib.import_module(modules[name])


def describe(name: str) -> str:
    """The benchmark's one-line ``DESCRIPTION`` (or its module docstring's first line)."""
    try:
        mod = load(name)
    except Exception as exc:  # a benchmark whose imports fail is still listed
        return f"(cannot import: {type(exc).__name__}: {exc})"
    text = getattr(mod, "DESCRIPTION", None) or (mod.__doc__ or "").strip()
    return text.splitlines()[0] if text else ""


def run(name: str, argv: list[str] | None = None) -> int:
    """Run one benchmark's ``main(argv)``; returns its exit status.

    A ``main()`` without parameters gets its options through ``sys.argv``. An
    int result is the exit status; anything else (``None``, a results dict) is 0.
    """
    main = load(name).main
    args = list(argv or [])
    try:
        takes_args = bool(inspect.signature(main).parameters)
    except (TypeError, ValueError):
        takes_args = True
    if takes_args:
        rc = main(args)
    else:
        saved = sys.argv
        sys.argv = [f"python -m benchmarks {name}", *args]
        try:
            rc = main()
        finally:
            sys.argv = saved
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0


def results_dir(path: str | Path | None = None) -> Path:
    """The directory results go to (created): ``path`` or ``benchmarks/results``."""
    d = Path(path) if path is not None else RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d
