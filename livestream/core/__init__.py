"""The pure core: topics, schemas, windows, offsets and epochs. No sockets, no event loop."""

from .derived import Derivation, DeriveError
from .keyed import KeyedTable
from .schema import Field, Schema
from .topic import DEFAULT_RETENTION_ROWS, Gap, Resume, Topic, Update, check_topic_name, new_epoch
from .window import ColumnWindow

__all__ = [
    "DEFAULT_RETENTION_ROWS",
    "ColumnWindow",
    "Derivation",
    "DeriveError",
    "Field",
    "Gap",
    "KeyedTable",
    "Resume",
    "Schema",
    "Topic",
    "Update",
    "check_topic_name",
    "new_epoch",
]
