"""Run a function that registers Pulumi resources under mocks and return what it registered.

The mocks are the offline plan's (infra.preview.FleetMocks: realistic AWS ids and ARNs), so a
component behaves here as it will when the lead wires it into `__main__.py`. Runs are isolated
like infra.preview's: a fresh context, monitor and event loop per call, `preview=False` so every
`apply` runs.
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import threading
from dataclasses import dataclass
from typing import Any, Callable

from infra.preview import STACK_TYPE, FleetMocks, ResourceRecord, _as_pulumi_mocks, normalize


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

    def custom(self, kind: str) -> ResourceRecord:
        found = [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]
        if len(found) != 1:
            raise KeyError(f"{kind}: found {[r.type for r in found]}")
        return found[0]


_LOCK = threading.Lock()


def run(build: Callable[[], Any], region: str = "us-east-1", stack: str = "test") -> Registered:
    with _LOCK:
        return contextvars.copy_context().run(_run, build, region, stack)


def _run(build: Callable[[], Any], region: str, stack: str) -> Registered:
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.stack import wait_for_rpcs

    records: list[ResourceRecord] = []
    providers: dict[str, str] = {}
    dependencies: dict[str, set[str]] = {}
    lock = threading.Lock()

    class _Recording(pulumi_mocks.MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            response = super().RegisterResource(request)
            if request.type != STACK_TYPE:
                inputs, _ = rpc.deserialize_properties_unwrap_secrets(request.object)
                with lock:
                    if request.provider:
                        providers[response.urn] = request.provider
                    dependencies[response.urn] = set(request.dependencies)
                    records.append(ResourceRecord(
                        urn=response.urn, type=request.type, name=request.name,
                        parent=request.parent or None, inputs=normalize(copy.deepcopy(inputs)),
                        custom=bool(request.custom),
                    ))
            return response

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        monitor = _Recording(_as_pulumi_mocks(FleetMocks(region)))
        pulumi.runtime.set_mocks(monitor.mocks, project="llm-fleet", stack=stack, preview=False, monitor=monitor)
        result = build()
        loop.run_until_complete(wait_for_rpcs())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            asyncio.set_event_loop(None)
    return Registered(sorted(records, key=lambda r: r.urn), result, providers, dependencies)
