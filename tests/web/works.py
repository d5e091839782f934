"""Works the web tests schedule (registered by subclassing, importable by name)."""

from __future__ import annotations

import threading

from conveyor.work import Work

GATE = threading.Event()
"""Set to let :class:`Gated` Works finish."""


class Quick(Work):
    """Completes at once."""

    category = "quick"
    n: int = 0

    def work(self) -> None:
        pass


class Gated(Work):
    """Waits for :data:`GATE` (or suspends on shutdown)."""

    category = "gated"
    n: int = 0

    def work(self) -> None:
        while not GATE.wait(0.05):
            if self.is_suspending():
                self.suspended()
                return


class Broken(Work):
    """Always fails, without retry: lands in the dead letters."""

    category = "broken"
    n: int = 0

    def work(self) -> None:
        raise RuntimeError(f"broken work {self.n} failed on purpose")


LONG_PATH = "/var/lib/conveyor/" + "a-very-long-directory-name/" * 24 + "input.bin"


class Verbose(Work):
    """Always fails with a long error holding an unbreakable path: lands in the dead letters."""

    category = "broken"
    n: int = 0

    def work(self) -> None:
        raise RuntimeError(f"work {self.n} cannot read {LONG_PATH}: the file is truncated at byte 4096")
