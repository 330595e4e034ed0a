"""``python -m benchmarks [NAME [OPTIONS...]]``: run one benchmark, or all of them."""

from __future__ import annotations

import sys
import time

from . import describe, discover, run


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = discover()
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\n  python -m benchmarks            run every benchmark with its defaults")
        print("  python -m benchmarks NAME ...   run one, passing the rest of the options to it")
        print("  python -m benchmarks --list     list the benchmarks")
        return 0
    if args and args[0] == "--list":
        for name in names:
            print(f"{name:12s} {describe(name)}")
        return 0
    if args and args[0] != "all":
        name, rest = args[0], args[1:]
        if name not in names:
            print(f"no benchmark named {name!r}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        return run(name, rest)
    # every benchmark, defaults; one failing does not stop the others
    rest = args[1:] if args else []
    status: dict[str, str] = {}
    for name in names:
        print(f"\n=== benchmark: {name} ===", flush=True)
        t0 = time.monotonic()
        try:
            rc = run(name, rest)
            status[name] = "ok" if rc == 0 else f"exit {rc}"
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit from argparse included
            status[name] = f"failed: {type(exc).__name__}: {exc}"
        status[name] += f" ({time.monotonic() - t0:.0f} s)"
    print("\n=== summary ===")
    for name, st in status.items():
        print(f"{name:12s} {st}")
    return 0 if all(s.startswith("ok") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
