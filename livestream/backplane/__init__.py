"""Where topics live: in this process (default), or shared between processes (Redis, later)."""

from .base import Backplane, DeleteListener, UpdateListener
from .memory import MemoryBackplane

__all__ = ["Backplane", "DeleteListener", "MemoryBackplane", "UpdateListener"]
