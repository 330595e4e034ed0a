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

Results
-------
Raw figures go under :data:`RESULTS_DIR` (``benchmarks/results/``, not
committed); :func:`results_dir` creates it. Every figure the docs cite comes
from a *summary* committed next to the docs: :func:`write_summary` writes
``docs/results/NAME.json`` (:data:`SUMMARY_DIR`) with the command that made it,
the date, the machine (CPUs, load average before and after: these runs share
a 2-core machine with other work, so ratios measured in the same run mean more
than absolute times), package versions, the settings, the figures and the
Markdown tables that docs/benchmarks.md quotes verbatim
(tests/test_benchmark_docs.py checks that they agree). Options every benchmark
takes for it (:func:`add_summary_options`): ``--summary-dir DIR`` and
``--no-summary``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import json
import os
import pkgutil
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PREFIX = "bench_"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
#: Where the committed summaries live (the docs cite them).
SUMMARY_DIR = REPO / "docs" / "results"
#: Said in every summary: the figures come from a machine shared with other work.
SHARED_MACHINE_NOTE = ("run on a shared 2-core machine while other work was running: absolute "
                       "times are noisy; ratios against baselines measured in the same run are "
                       "the figures to trust")

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


# -- committed summaries ----------------------------------------------------------------------


def add_summary_options(parser: argparse.ArgumentParser) -> None:
    """``--summary-dir DIR`` (default ``docs/results``) and ``--no-summary``."""
    parser.add_argument("--summary-dir", default=None,
                        help=f"where the summary JSON goes (default {SUMMARY_DIR.relative_to(REPO)})")
    parser.add_argument("--no-summary", action="store_true",
                        help="do not write the summary (smoke runs)")


def command_line(name: str, argv: list[str] | None) -> str:
    """The command that reproduces a run: ``python -m benchmarks NAME [ARGS...]``."""
    return f"python -m benchmarks {name}" + (" " + shlex.join(argv) if argv else "")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_facts() -> dict[str, Any]:
    """CPUs, CPU model, OS, Python and the load average right now."""
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "platform": platform.platform(),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    try:
        facts["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        facts["load_avg"] = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        facts["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return facts


def versions(*names: str) -> dict[str, str]:
    """Versions of livestream and the named packages (those installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("livestream", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            mod = sys.modules.get(name)
            if mod is not None and getattr(mod, "__version__", None):
                out[name] = str(mod.__version__)
    return out


def git_state() -> dict[str, Any]:
    """The commit the benchmark ran on, and whether the work tree had changes."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    # changes to tracked files, not counting the summaries themselves
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 f":(exclude){SUMMARY_DIR.relative_to(REPO).as_posix()}")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def write_summary(name: str, *, argv: list[str] | None, started: _dt.datetime,
                  machine_before: dict[str, Any], settings: dict[str, Any],
                  figures: dict[str, Any], tables: dict[str, str],
                  packages: tuple[str, ...] = (), notes: list[str] | None = None,
                  summary_dir: str | Path | None = None) -> Path:
    """Write ``docs/results/NAME.json`` (or ``summary_dir/NAME.json``); returns its path.

    ``tables`` are the Markdown tables (title → text) the docs quote verbatim;
    ``figures`` the numbers behind them; ``machine_before`` is
    :func:`machine_facts` taken when the run started (the load average after is
    added here).
    """
    after = machine_facts()
    machine = dict(machine_before)
    machine["load_avg_start"] = machine.pop("load_avg", None)
    machine["load_avg_end"] = after.get("load_avg")
    doc = {
        "benchmark": name,
        "command": command_line(name, argv),
        "date": started.astimezone(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 1),
        "machine": machine,
        "shared_machine": SHARED_MACHINE_NOTE,
        "versions": versions(*packages),
        "git": git_state(),
        "settings": settings,
        "figures": figures,
        "tables": tables,
        "notes": list(notes or []),
    }
    d = Path(summary_dir) if summary_dir is not None else SUMMARY_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str, ensure_ascii=False) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one letter per column (``l``/``r``), default: first
    column left, the others right."""
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
