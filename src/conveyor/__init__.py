"""Conveyor: asynchronous processing for Python, modelled on Nuxeo's asynchronous layer.

The public entry points: :class:`Conveyor` (a node built from ``conveyor.toml``), :class:`Record`
and :class:`Watermark` (what streams carry), :func:`transaction` (schedule Works after commit),
and the sub-packages ``conveyor.log``, ``conveyor.stream``, ``conveyor.work``, ``conveyor.bulk``,
``conveyor.kv``, ``conveyor.pubsub``, ``conveyor.transient``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError
from conveyor.record import Flag, Record, Watermark

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["Conveyor", "ConveyorError", "Flag", "Record", "Watermark", "transaction"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: importing conveyor must not import every layer (nor connect anything).
    if name == "Conveyor":
        from conveyor.runtime.node import Conveyor

        return Conveyor
    if name == "transaction":
        from conveyor.transaction import transaction

        return transaction
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
