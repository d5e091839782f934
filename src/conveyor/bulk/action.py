"""Bulk actions: what runs on each batch of ids, registered by name.

Write one as a function::

    @bulk_action("addTag", bucket_size=100, batch_size=25, validate=check_tag)
    def add_tag(context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        ...

or as a :class:`BulkAction` subclass (which is registered by defining ``name``). Actions must be
idempotent: delivery is at-least-once, so a batch may run again after a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkError, BulkValidationError

if TYPE_CHECKING:
    from conveyor.bulk.status import BulkStatus
    from conveyor.repository import Repository
    from conveyor.transient import TransientStore

__all__ = [
    "ActionContext",
    "ActionFunction",
    "BulkAction",
    "Validator",
    "bulk_action",
    "get_action",
    "register_action",
    "registered_actions",
]

DEFAULT_BUCKET_SIZE = 100
DEFAULT_BATCH_SIZE = 25

Validator = Callable[[dict[str, Any]], None]
"""Checks a command's params before it is scheduled; raises ``BulkValidationError`` (or ValueError)."""


@dataclass
class ActionContext:
    """What an action sees while it processes one bucket of a command."""

    command: BulkCommand
    bucket: int
    repository: Repository | None = None
    transient_store: TransientStore | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space kept from ``start_bucket`` to ``end_bucket``."""
    hints: Mapping[str, Any] | None = None
    """The bucket's storage hints by id (from the scroller; None if it gave none): pass them on
    to the repository's bulk changes (``hints=``), which find the documents faster with them."""

    @property
    def params(self) -> dict[str, Any]:
        """The command's params."""
        return self.command.params

    def require_repository(self) -> Repository:
        """The repository, or a BulkError naming the action when the service has none."""
        if self.repository is None:
            raise BulkError(f"bulk action {self.command.action!r} needs a repository; the service has none")
        return self.repository

    def require_transient_store(self) -> TransientStore:
        """The transient store, or a BulkError naming the action when the service has none."""
        if self.transient_store is None:
            raise BulkError(
                f"bulk action {self.command.action!r} needs a transient store; the service has none"
            )
        return self.transient_store

    def report_error(self, item_id: str, message: str) -> None:
        """Count ``item_id`` as failed with ``message`` without raising."""
        self.errors.append((item_id, message))


class BulkAction:
    """A bulk action (Nuxeo's ``BulkActionDescriptor`` plus its computation).

    Class attributes describe it; :meth:`compute` does the work on a batch of ids. An exception
    from ``compute`` is not fatal: the batch is retried id by id and the ids that still fail are
    counted in the status's ``error_count``. One instance runs per computation thread.
    """

    name: ClassVar[str] = ""
    bucket_size: ClassVar[int] = DEFAULT_BUCKET_SIZE
    batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE
    http_enabled: ClassVar[bool] = False
    """Whether non-admin users may submit it over HTTP."""
    sequential: ClassVar[bool] = False
    """Commands of this action are scrolled one after the other and their buckets processed in order."""
    exclusive: ClassVar[bool] = False
    """At most one running command of this action per repository; submit refuses a second one."""
    default_scroller: ClassVar[str] = "repository"
    query_limit: ClassVar[int | None] = None
    concurrency: ClassVar[int] = 2
    """Threads of the action's computation per process."""
    partitions: ClassVar[int] = 4
    """Partitions of the action's input stream (the most processes/threads that share one command)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            register_action(cls)

    @classmethod
    def input_stream(cls) -> str:
        """The urn of the stream carrying this action's buckets: ``bulk/<name>``."""
        return f"bulk/{cls.name}"

    @classmethod
    def has_completion(cls) -> bool:
        """True when the action overrides :meth:`complete` (a final step once all ids are done)."""
        return cls.complete is not BulkAction.complete

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        """Check ``command`` (its params mostly) before it is scheduled; raise BulkValidationError."""

    def start_bucket(self, context: ActionContext) -> None:
        """Called before the batches of a bucket."""

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        """Process one batch of ``ids`` with the command's ``params``. Must be idempotent."""
        raise NotImplementedError(f"bulk action {self.name!r} does not implement compute")

    def end_bucket(self, context: ActionContext) -> None:
        """Called after the batches of a bucket (before its status delta is sent)."""

    def complete(self, context: ActionContext, status: BulkStatus) -> dict[str, Any] | None:
        """Called once every id is processed, before the command is COMPLETED; returns its result.

        Runs in the status computation, possibly more than once after a crash: must be idempotent.
        """
        return None


_REGISTRY: dict[str, type[BulkAction]] = {}
_LOCK = threading.Lock()


def register_action(cls: type[BulkAction]) -> type[BulkAction]:
    """Register ``cls`` under ``cls.name`` (a class of the same module and name replaces it)."""
    name = cls.name
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise BulkError(f"bulk action name must be letters, digits, '_' or '-', got {name!r}")
    with _LOCK:
        old = _REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise BulkError(
                f"bulk action {name!r} is already registered by {old.__module__}.{old.__qualname__}"
            )
        _REGISTRY[name] = cls
    return cls


def get_action(name: str) -> type[BulkAction]:
    """The action registered as ``name``; BulkValidationError naming the known ones otherwise."""
    _load_builtins()
    with _LOCK:
        found = _REGISTRY.get(name)
        if found is None:
            raise BulkValidationError(f"unknown bulk action {name!r}; known: {', '.join(sorted(_REGISTRY))}")
        return found


def registered_actions() -> dict[str, type[BulkAction]]:
    """Every registered action, by name (the built-ins included)."""
    _load_builtins()
    with _LOCK:
        return dict(_REGISTRY)


def _load_builtins() -> None:
    import conveyor.bulk.actions  # noqa: F401  (registers the built-in actions on import)


ActionFunction = Callable[[ActionContext, list[str], dict[str, Any]], None]
A = TypeVar("A", bound=type[BulkAction])


def _validator_method(validate: Validator, name: str) -> Callable[[type[BulkAction], BulkCommand], None]:
    def check(cls: type[BulkAction], command: BulkCommand) -> None:
        try:
            validate(command.params)
        except BulkValidationError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BulkValidationError(f"bulk action {name!r}: invalid params: {exc}") from exc

    return check


def bulk_action(
    name: str,
    bucket_size: int = DEFAULT_BUCKET_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    http_enabled: bool = False,
    sequential: bool = False,
    exclusive: bool = False,
    validate: Validator | None = None,
    **options: Any,
) -> Callable[[Any], type[BulkAction]]:
    """Register a function ``(context, ids, params) -> None`` or a BulkAction subclass as action ``name``.

    ``options`` sets further class attributes (``default_scroller``, ``query_limit``,
    ``concurrency``, ``partitions``). Returns the registered BulkAction class.
    """
    unknown = set(options) - {"default_scroller", "query_limit", "concurrency", "partitions"}
    if unknown:
        raise BulkError(f"bulk_action {name!r}: unknown options {sorted(unknown)}")
    if bucket_size < 1 or batch_size < 1:
        raise BulkError(f"bulk_action {name!r}: bucket_size and batch_size must be >= 1")
    attributes: dict[str, Any] = {
        "name": name,
        "bucket_size": bucket_size,
        "batch_size": batch_size,
        "http_enabled": http_enabled,
        "sequential": sequential,
        "exclusive": exclusive,
        **options,
    }
    if validate is not None:
        attributes["validate"] = classmethod(_validator_method(validate, name))

    def decorate(target: Any) -> type[BulkAction]:
        if isinstance(target, type) and issubclass(target, BulkAction):
            body = {**attributes, "__module__": target.__module__, "__qualname__": target.__qualname__}
            body["__doc__"] = target.__doc__
            return type(target.__name__, (target,), body)
        if not callable(target):
            raise BulkError(f"bulk_action {name!r} decorates a function or a BulkAction subclass")
        function: ActionFunction = target

        def compute(self: BulkAction, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
            function(context, ids, params)

        body = {
            **attributes,
            "compute": compute,
            "__module__": getattr(target, "__module__", __name__),
            "__qualname__": getattr(target, "__qualname__", name),
            "__doc__": getattr(target, "__doc__", None),
            "__wrapped__": target,
        }
        return type(getattr(target, "__name__", name), (BulkAction,), body)

    return decorate


def check_params(
    action: str,
    params: Mapping[str, Any],
    required: tuple[str, ...] = (),
    allowed: tuple[str, ...] | None = None,
) -> None:
    """Validation helper: ``required`` keys present, no key outside ``allowed`` (when given)."""
    missing = [key for key in required if key not in params]
    if missing:
        raise BulkValidationError(f"bulk action {action!r}: missing params {missing}")
    if allowed is not None:
        extra = sorted(set(params) - set(allowed))
        if extra:
            raise BulkValidationError(
                f"bulk action {action!r}: unknown params {extra}; allowed: {list(allowed)}"
            )
