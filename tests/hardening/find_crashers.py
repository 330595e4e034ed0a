"""Search for Arrow publish bodies that crash the server's decoding; save them to corpus/.

Not a test: a tool that made the regression corpus (see corpus/README.md). It
decodes and applies seeded mutations of valid publish bodies
(``hardening_util.arrow_cases``) the way the server does
(``LivestreamServer.frame_from_message`` then ``publish``), in a child process
with a capped address space, and records

- ``segv`` / ``abort`` / ``killed``: the child died (a signal);
- ``memory``: a ``MemoryError``;
- ``internal``: any other exception that is not a ``LivestreamError`` (the
  server would log a traceback and answer ``internal``), one file per kind.

Usage (from the repository root)::

    PYTHONPATH=. python tests/hardening/find_crashers.py --seed 1 --cases 3000 [--save]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "spine")]


def child(seed: int, cases: int, start: int, fd: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from hardening_util import arrow_cases, base_bodies

    from livestream.errors import LivestreamError
    from livestream.server.app import LivestreamServer
    from livestream.server.config import ServerConfig

    core = LivestreamServer(ServerConfig())
    for topic, body in base_bodies():
        # a base body the code under test cannot take leaves its topic unmade
        with contextlib.suppress(LivestreamError):
            core.publish(topic, core.frame_from_message(topic, {}, memoryview(body)))
    out = os.fdopen(fd, "w", buffering=1)
    for i, topic, body in arrow_cases(seed, cases):
        if i < start:
            continue
        out.write(f"case {i}\n")
        try:
            core.publish(topic, core.frame_from_message(topic, {}, memoryview(body)))
        except LivestreamError:
            pass
        except MemoryError:
            out.write(f"exc {i} memory MemoryError\n")
        except Exception as exc:  # classifying them is the point
            words = re.sub(r"[^A-Za-z]+", " ", str(exc)).split()[:4]
            out.write(f"exc {i} internal {type(exc).__name__}-{'-'.join(words)}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--save", action="store_true", help="write the finds to corpus/")
    args = ap.parse_args()
    from hardening_util import CORPUS, arrow_cases

    bodies = {i: (t, b) for i, t, b in arrow_cases(args.seed, args.cases)}
    finds: list[tuple[str, int]] = []
    seen: set[str] = set()
    start = 0
    while start < args.cases:
        r, w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(args.seed), str(args.cases), str(start),
             str(w)], pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(w)
        last = None
        with os.fdopen(r) as f:
            for line in f:
                parts = line.split()
                if parts[0] == "case":
                    last = int(parts[1])
                elif parts[3] not in seen or parts[2] == "memory":
                    seen.add(parts[3])
                    finds.append((parts[2], int(parts[1])))
        _, err = proc.communicate()
        if proc.returncode == 0 or last is None:
            if proc.returncode:
                sys.exit(f"child failed before the first case:\n{err.decode()}")
            break
        kind = {-11: "segv", -6: "abort", -9: "killed"}.get(proc.returncode,
                                                           f"rc{proc.returncode}")
        finds.append((kind, last))
        start = last + 1
    for kind, i in finds:
        topic, body = bodies[i]
        name = f"{kind}__{topic}__s{args.seed}-{i}.bin"
        print(name, len(body))
        if args.save:
            (CORPUS / name).write_bytes(body)
    print(f"{len(finds)} finds in {args.cases} cases (seed {args.seed})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*map(int, sys.argv[2:6]))
    else:
        main()
