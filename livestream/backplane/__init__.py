"""Where topics live: in this process (default), or shared between processes (Redis, later)."""

from .base import Backplane, UpdateListener
from .memory import MemoryBackplane

__all__ = ["Backplane", "MemoryBackplane", "UpdateListener"]
