"""Fixtures for kernel-side notebook tests: a real IPython kernel driven over ZMQ.

``kernel`` starts a real ipykernel (as JupyterLab would) and returns a
:class:`kernel_util.KernelDriver`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kernel_util import KernelDriver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kernel():
    """A fresh real IPython kernel (cwd: the repo root)."""
    from jupyter_client.manager import KernelManager

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    driver = KernelDriver(km, kc)
    try:
        yield driver
    finally:
        driver.shutdown()
