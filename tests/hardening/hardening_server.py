"""A livestream server in its own process, for the hardening tests.

Input that crashes the interpreter (a segfault in native code) must fail a test,
not kill pytest, so the tests that throw untrusted bytes at a server start it
with this script. It prints the server's port on stdout, logs to stderr (the
tests read that log for ``internal`` errors and tracebacks) and serves until
SIGTERM. ``--memory-limit`` caps the address space, so that an input that makes
the server allocate without bound fails fast instead of exhausting the machine.
"""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-errors", type=int, default=None)
    parser.add_argument("--max-message-size", type=int, default=None)
    parser.add_argument("--memory-limit", type=int, default=None, metavar="BYTES",
                        help="RLIMIT_AS of this process")
    args = parser.parse_args()
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    import livestream as ls

    options = {}
    if args.max_errors is not None:
        options["max_errors"] = args.max_errors
    if args.max_message_size is not None:
        options["max_message_size"] = args.max_message_size
    srv = ls.serve("127.0.0.1", 0, **options)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(srv.port, flush=True)
    stop.wait()
    srv.close()


if __name__ == "__main__":
    main()
