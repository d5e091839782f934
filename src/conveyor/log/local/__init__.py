"""``local://``: the embedded log backend, memory-mapped segment files shared by the processes of
one machine (see ``manager.py`` for the layout and ``segment.py`` for the entry format)."""

from conveyor.log.local.manager import LocalLogManager
from conveyor.log.local.options import FsyncPolicy, LocalLogOptions, Retention

__all__ = ["FsyncPolicy", "LocalLogManager", "LocalLogOptions", "Retention"]
