"""Run a function that registers Pulumi resources under mocks and return what it registered.

The runtime is the offline plan's (infra.program.offline.run_mocked: FleetMocks with realistic AWS ids
and ARNs, a fresh context, monitor and event loop per call, `preview=False` so every `apply`
runs), so a component behaves here as it does inside `__main__.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from infra.core.graph import Node as ResourceRecord
from infra.program.offline import run_mocked


@dataclass
class Registered:
    resources: list[ResourceRecord]
    result: Any
    providers: dict[str, str]  # urn -> provider reference ("<provider urn>::<id>"), custom resources only
    dependencies: dict[str, set[str]]  # urn -> URNs it was registered as depending on

    def depends_on(self, record: ResourceRecord, other: ResourceRecord) -> bool:
        return other.urn in self.dependencies.get(record.urn, set())

    def of_type(self, typ: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name_suffix: str = "") -> ResourceRecord:
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        if len(found) != 1:
            raise KeyError(f"{typ} *{name_suffix}: found {[r.name for r in found]}")
        return found[0]

    def releases(self) -> dict[str, ResourceRecord]:
        """helm.v3.Release records by release name."""
        return {r.inputs["name"]: r for r in self.of_type("kubernetes:helm.sh/v3:Release")}

    def custom(self, kind: str, name: str | None = None) -> ResourceRecord:
        """The one Kubernetes object of `kind` (named `name` when several share the kind)."""
        found = [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")
                 and (name is None or (r.inputs.get("metadata") or {}).get("name") == name)]
        if len(found) != 1:
            raise KeyError(f"{kind} {name or ''}: found {[r.type for r in found]}")
        return found[0]


def run(build: Callable[[], Any], region: str = "us-east-1", stack: str = "test") -> Registered:
    """`build` under the offline plan's own mocked runtime (infra.program.offline.run_mocked)."""
    holder: dict[str, Any] = {}

    def body() -> dict[str, Any]:
        holder["result"] = build()
        return {}

    program = run_mocked(body, stack, region)
    return Registered(
        list(program.resources),
        holder.get("result"),
        {r.urn: r.provider for r in program.resources if r.provider},
        {r.urn: set(r.depends_on) for r in program.resources},
    )
