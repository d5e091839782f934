"""The runtime: settings, configuration loading and the node that wires every layer."""

from conveyor.runtime.config import load_settings
from conveyor.runtime.node import Conveyor
from conveyor.runtime.settings import Settings

__all__ = ["Conveyor", "Settings", "load_settings"]
