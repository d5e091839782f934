"""``Topology``: computations wired to streams, as a directed acyclic graph.

``Topology.builder().add_computation(Upper, ["i1:demo/in", "o1:demo/out"]).build()`` maps the
local stream names of each computation to real streams (urns). A computation whose output feeds,
directly or not, one of its own inputs makes a cycle, which is rejected with the cycle named.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.errors import InvalidNameError, TopologyError
from conveyor.log.names import Name
from conveyor.stream.computation import Computation, ComputationFactory, ComputationMetadata

__all__ = ["ComputationSpec", "Topology", "TopologyBuilder"]


@dataclass(frozen=True, slots=True)
class ComputationSpec:
    """A computation of a topology: its factory, metadata and local -> stream mapping."""

    factory: ComputationFactory
    metadata: ComputationMetadata
    inputs: dict[str, Name]
    """Local input name (``i1``) -> stream."""
    outputs: dict[str, Name]
    """Local output name (``o1``) -> stream."""

    @property
    def name(self) -> str:
        """The computation name."""
        return self.metadata.name

    def input_local_name(self, stream: Name) -> str:
        """The local name under which ``stream`` is read."""
        for local, name in self.inputs.items():
            if name == stream:
                return local
        raise TopologyError(f"computation {self.name!r} does not read stream {stream.urn!r}")


class TopologyBuilder:
    """Collects computations and their mappings; :meth:`build` validates the graph."""

    def __init__(self) -> None:
        self._specs: list[ComputationSpec] = []

    def add_computation(self, factory: ComputationFactory, mapping: Sequence[str]) -> TopologyBuilder:
        """Add the computation made by ``factory`` with ``mapping`` entries ``"i1:ns/stream"``."""
        if not callable(factory):
            raise TopologyError(f"add_computation needs a callable returning a Computation, got {factory!r}")
        if isinstance(mapping, str):
            raise TopologyError(
                f"mapping must be a list of 'local:ns/stream' strings, got the string {mapping!r}"
            )
        sample = factory()
        if not isinstance(sample, Computation):
            raise TopologyError(f"factory {factory!r} returned {type(sample).__name__}, not a Computation")
        metadata = sample.metadata
        name = metadata.name
        if any(spec.name == name for spec in self._specs):
            raise TopologyError(f"duplicate computation name {name!r} in topology")
        inputs: dict[str, Name] = {}
        outputs: dict[str, Name] = {}
        for entry in mapping:
            local, sep, urn = entry.partition(":") if isinstance(entry, str) else ("", "", "")
            if not sep or not local or not urn:
                raise TopologyError(
                    f"computation {name!r}: bad stream mapping {entry!r}, expected 'i1:namespace/stream'"
                )
            try:
                stream = Name.of_urn(urn)
            except InvalidNameError as exc:
                raise TopologyError(f"computation {name!r}: bad stream in mapping {entry!r}: {exc}") from exc
            if local in metadata.inputs:
                target = inputs
            elif local in metadata.outputs:
                target = outputs
            else:
                raise TopologyError(
                    f"computation {name!r}: unknown stream {local!r} in mapping {entry!r}; "
                    f"inputs: {list(metadata.inputs)}, outputs: {list(metadata.outputs)}"
                )
            if local in target:
                raise TopologyError(f"computation {name!r}: {local!r} is mapped twice")
            target[local] = stream
        for local in metadata.inputs:
            if local not in inputs:
                inputs[local] = _unmapped(name, local, "input")
        for local in metadata.outputs:
            if local not in outputs:
                outputs[local] = _unmapped(name, local, "output")
        if len(set(inputs.values())) != len(inputs):
            raise TopologyError(f"computation {name!r} reads the same stream twice: {mapping!r}")
        self._specs.append(ComputationSpec(factory, metadata, inputs, outputs))
        return self

    def build(self) -> Topology:
        """The validated topology; ``TopologyError`` naming the cycle if there is one."""
        if not self._specs:
            raise TopologyError("a topology needs at least one computation")
        return Topology(list(self._specs))


def _unmapped(name: str, local: str, kind: str) -> Name:
    # A local name that is already a stream urn ("ns/stream") maps to itself, as in Nuxeo.
    if "/" in local:
        try:
            return Name.of_urn(local)
        except InvalidNameError:
            pass
    raise TopologyError(
        f"computation {name!r}: {kind} {local!r} is not mapped to a stream; add '{local}:namespace/stream'"
    )


class Topology:
    """An immutable, validated graph of computations and streams (build it with :meth:`builder`)."""

    def __init__(self, specs: list[ComputationSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._order = self._sort_or_raise(specs)

    @staticmethod
    def builder() -> TopologyBuilder:
        """A new builder."""
        return TopologyBuilder()

    # --- graph --------------------------------------------------------------------------------

    def _readers(self, stream: Name) -> list[str]:
        return [spec.name for spec in self._specs.values() if stream in spec.inputs.values()]

    def _writers(self, stream: Name) -> list[str]:
        return [spec.name for spec in self._specs.values() if stream in spec.outputs.values()]

    def _sort_or_raise(self, specs: list[ComputationSpec]) -> list[str]:
        children = {spec.name: self._children_of(spec) for spec in specs}
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        path: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            path.append(node)
            for child, _ in children[node]:
                if state.get(child) == 1:
                    raise TopologyError(f"topology has a cycle: {self._describe_cycle(path, child)}")
                if child not in state:
                    visit(child)
            path.pop()
            state[node] = 2
            order.append(node)

        for spec in specs:
            if spec.name not in state:
                visit(spec.name)
        order.reverse()
        return order

    def _children_of(self, spec: ComputationSpec) -> list[tuple[str, Name]]:
        return [(reader, stream) for stream in spec.outputs.values() for reader in self._readers(stream)]

    def _describe_cycle(self, path: list[str], back_to: str) -> str:
        cycle = [*path[path.index(back_to) :], back_to]
        parts = [cycle[0]]
        for src, dst in itertools.pairwise(cycle):
            stream = next(s for c, s in self._children_of(self._specs[src]) if c == dst)
            parts.append(f"-[{stream.urn}]->")
            parts.append(dst)
        return " ".join(parts)

    # --- queries ------------------------------------------------------------------------------

    @property
    def computation_names(self) -> list[str]:
        """Computation names, sources first (a topological order)."""
        return list(self._order)

    def spec(self, name: str) -> ComputationSpec:
        """The computation ``name``; ``TopologyError`` if unknown."""
        try:
            return self._specs[name]
        except KeyError:
            raise TopologyError(f"unknown computation {name!r}; known: {', '.join(self._order)}") from None

    def metadata(self, name: str) -> ComputationMetadata:
        """Metadata of the computation ``name``."""
        return self.spec(name).metadata

    def streams(self) -> list[Name]:
        """Every stream read or written, sorted by urn."""
        found = {s for spec in self._specs.values() for s in (*spec.inputs.values(), *spec.outputs.values())}
        return sorted(found, key=lambda n: n.urn)

    def input_streams(self, name: str) -> list[Name]:
        """The streams read by ``name``, in local name order."""
        return list(self.spec(name).inputs.values())

    def output_streams(self, name: str) -> list[Name]:
        """The streams written by ``name``, in local name order."""
        return list(self.spec(name).outputs.values())

    def children(self, name: str) -> list[str]:
        """Computations reading what ``name`` writes."""
        return sorted({child for child, _ in self._children_of(self.spec(name))})

    def parents(self, name: str) -> list[str]:
        """Computations writing what ``name`` reads."""
        spec = self.spec(name)
        return sorted({w for stream in spec.inputs.values() for w in self._writers(stream)})

    def descendants(self, name: str) -> list[str]:
        """Every computation downstream of ``name``."""
        return self._closure(name, self.children)

    def ancestors(self, name: str) -> list[str]:
        """Every computation upstream of ``name``."""
        return self._closure(name, self.parents)

    def _closure(self, name: str, step: Callable[[str], list[str]]) -> list[str]:
        seen: set[str] = set()
        todo = list(step(name))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(step(node))
        return sorted(seen)

    def roots(self) -> list[str]:
        """Computations with no upstream computation."""
        return [n for n in self._order if not self.parents(n)]

    def is_source(self, name: str) -> bool:
        """True when no computation writes to what ``name`` reads."""
        return not self.parents(name)

    def is_sink(self, name: str) -> bool:
        """True when no computation reads what ``name`` writes."""
        return not self.children(name)

    # --- descriptions -------------------------------------------------------------------------

    def describe(self) -> str:
        """A readable text description: one block per computation, in topological order."""
        lines = [f"Topology: {len(self._order)} computation(s), {len(self.streams())} stream(s)"]
        for name in self._order:
            spec = self._specs[name]
            lines.append(f"  {name}")
            for local, stream in spec.inputs.items():
                writers = ", ".join(self._writers(stream)) or "external"
                lines.append(f"    {local} <- {stream.urn}  (from {writers})")
            for local, stream in spec.outputs.items():
                readers = ", ".join(self._readers(stream)) or "none"
                lines.append(f"    {local} -> {stream.urn}  (to {readers})")
        return "\n".join(lines)

    def to_dot(self) -> str:
        """The graph in Graphviz dot: computations as boxes, streams as ellipses."""
        lines = ["digraph topology {", "  rankdir=LR;"]
        for stream in self.streams():
            lines.append(f'  "s:{stream.urn}" [label="{stream.urn}", shape=ellipse];')
        for name in self._order:
            spec = self._specs[name]
            lines.append(f'  "c:{name}" [label="{name}", shape=box, style=bold];')
            for local, stream in spec.inputs.items():
                lines.append(f'  "s:{stream.urn}" -> "c:{name}" [label="{local}"];')
            for local, stream in spec.outputs.items():
                lines.append(f'  "c:{name}" -> "s:{stream.urn}" [label="{local}"];')
        lines.append("}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        ids: dict[str, str] = {}

        def node_id(kind: str, label: str) -> str:
            return ids.setdefault(f"{kind}:{label}", f"{kind}{len(ids)}")

        lines = ["flowchart LR"]
        for stream in self.streams():
            lines.append(f'  {node_id("s", stream.urn)}(["{stream.urn}"])')
        for name in self._order:
            spec = self._specs[name]
            cid = node_id("c", name)
            lines.append(f'  {cid}["{name}"]')
            for local, stream in spec.inputs.items():
                lines.append(f"  {node_id('s', stream.urn)} -->|{local}| {cid}")
            for local, stream in spec.outputs.items():
                lines.append(f"  {cid} -->|{local}| {node_id('s', stream.urn)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"Topology({self._order!r})"
