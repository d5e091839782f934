"""Transient store (Nuxeo's TransientStore): temporary parameters and blobs shared between nodes.

Metadata lives in a key-value store (``transient_<name>`` on the node), blob contents in a
directory; entries expire after a first-level TTL, or a shorter second-level TTL once released.
"""

from __future__ import annotations

from conveyor.transient.blobs import Blob, BlobInput
from conveyor.transient.store import GcStats, TransientStore

__all__ = ["Blob", "BlobInput", "GcStats", "TransientStore"]
