"""Helpers for kernel-side notebook tests: drive a real IPython kernel like JupyterLab.

:class:`KernelDriver` ``run(code, cell_id=...)`` executes a cell the way JupyterLab
does (with the ``cellId`` metadata) and returns its outputs; every iopub message is
also recorded with its kernel-side timestamp, so tests can count the comm messages
a widget sent.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class CellResult:
    """What one executed cell produced."""

    status: str
    outputs: list[dict] = field(default_factory=list)
    error: dict | None = None

    @property
    def text(self) -> str:
        """stdout/stderr text and text/plain results, concatenated."""
        parts = []
        for o in self.outputs:
            if o["msg_type"] == "stream":
                parts.append(o["content"]["text"])
            elif o["msg_type"] in ("execute_result", "display_data"):
                parts.append(o["content"]["data"].get("text/plain", ""))
        return "".join(parts)


class KernelDriver:
    """A started kernel plus a thread that records every iopub message."""

    def __init__(self, km, kc) -> None:
        self.km = km
        self.kc = kc
        self.iopub: list[dict] = []
        self._lock = threading.Lock()
        self._by_parent: dict[str, queue.Queue] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            except Exception:
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                self.iopub.append(msg)
                q = self._by_parent.get(msg.get("parent_header", {}).get("msg_id"))
            if q is not None:
                q.put(msg)

    def run(self, code: str, *, cell_id: str | None = None, timeout: float = 120.0,
            allow_error: bool = False) -> CellResult:
        """Execute ``code`` as a notebook cell; raise on error unless ``allow_error``."""
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content,
                                  metadata={"cellId": cell_id or str(uuid.uuid4())})
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._by_parent[msg["header"]["msg_id"]] = q
        self.kc.shell_channel.send(msg)
        result = CellResult(status="?")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish in {timeout}s:\n{code}")
            try:
                m = q.get(timeout=left)
            except queue.Empty:
                continue
            t = m["msg_type"]
            if t == "status" and m["content"]["execution_state"] == "idle":
                break
            if t in ("stream", "display_data", "execute_result", "error"):
                result.outputs.append(m)
            if t == "error":
                result.error = m["content"]
        result.status = "error" if result.error else "ok"
        if result.error and not allow_error:
            tb = "\n".join(result.error.get("traceback", []))
            raise AssertionError(f"cell failed: {result.error['ename']}: {result.error['evalue']}\n{tb}")
        return result

    def value(self, expr: str, timeout: float = 60.0):
        """Evaluate ``expr`` in the kernel and return ``repr``-evaluated value."""
        import ast

        res = self.run(f"print(repr({expr}))", timeout=timeout)
        text = "".join(o["content"]["text"] for o in res.outputs if o["msg_type"] == "stream")
        return ast.literal_eval(text.strip())

    def comm_messages(self, comm_id: str) -> list[dict]:
        """The iopub comm messages the kernel sent on ``comm_id`` so far."""
        with self._lock:
            return [m for m in self.iopub
                    if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == comm_id]

    def messages(self, msg_type: str) -> list[dict]:
        with self._lock:
            return [m for m in self.iopub if m["msg_type"] == msg_type]

    def shutdown(self) -> None:
        self._stop.set()
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def msg_time(msg: dict) -> float:
    """The kernel-side send time of a message (seconds since the epoch)."""
    d = msg["header"]["date"]
    if isinstance(d, str):
        d = datetime.fromisoformat(d)
    return d.timestamp()


def max_per_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of timestamps inside any span of ``window`` seconds."""
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
