"""Runtime isolation: run a Pulumi program body in-process under mocks, many times per process.

Each run gets a fresh `contextvars` context (Pulumi keeps its settings, root resource and config
in context variables), a fresh mock monitor and a fresh event loop. It runs with
`preview=False` so every `apply` callback runs, waits for all outstanding RPCs and outputs, and
records every registered resource as a graph node with its inputs as the engine sees them
(camelCase keys; numbers arrive as floats and are turned back into ints where integral), its
id and its property dependencies; reads (a StackReference) are recorded too. About 0.4 s a run
once pulumi_aws is imported, against ~2.8 s for a subprocess that imports everything again.
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from infra.core.graph import STACK_TYPE, Node, ResourceGraph
from infra.core.labels import PROJECT
from infra.program.offline.lean_imports import use_lean_aws_imports
from infra.program.offline.mocks import MOCK_ORGANIZATION, FleetMocks, StackOutputs


def normalize(value: Any) -> Any:
    """Engine view -> display: integral floats back to ints and keys sorted, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def engine_config(entries: Mapping[str, Any]) -> dict[str, str]:
    """What the engine passes the program: strings, structured values as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()}


@dataclass
class MockedRun:
    """What a program registered under mocks: its resources as a graph, and its outputs."""

    graph: ResourceGraph
    outputs: dict[str, Any]
    secret_outputs: tuple[str, ...] = ()
    diagnostics: list[str] = field(default_factory=list)

    @property
    def stack(self) -> str:
        return self.graph.stack

    @property
    def region(self) -> str:
        return self.graph.region or ""

    @property
    def resources(self) -> tuple[Node, ...]:
        return self.graph.nodes

    def by_urn(self) -> Mapping[str, Node]:
        return self.graph.by_urn

    def of_type(self, typ: str) -> list[Node]:
        return self.graph.of_type(typ)

    def one(self, typ: str, name: str) -> Node:
        return self.graph.one(typ, name)

    def az_of(self, node: Node) -> str | None:
        return self.graph.az_of(node)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


_RUN_LOCK = threading.Lock()


def run_mocked(
    body: Callable[[], Any],
    stack: str,
    region: str,
    config: Mapping[str, Any] | None = None,
    *,
    project: str = PROJECT,
    stack_outputs: Mapping[str, StackOutputs] | None = None,
) -> MockedRun:
    """Run `body` (a Pulumi program of `project`) under mocks with `config` (full keys -> values);
    `stack_outputs` answers the StackReferences it reads (stack name -> outputs)."""
    with _RUN_LOCK:
        # Importing the generated pulumi_aws classes allocates ~10^6 objects; full cyclic-GC
        # passes over them cost seconds and free nothing, so pause the collector for the run
        # and restore it afterwards.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            ctx = contextvars.copy_context()
            mocks = FleetMocks(region, stack_outputs=stack_outputs)
            return ctx.run(_run_isolated, body, dict(config or {}), stack, region, project, mocks)
        finally:
            if gc_was_enabled:
                gc.enable()


def _as_pulumi_mocks(mocks: FleetMocks) -> Any:
    import pulumi

    class _Adapter(pulumi.runtime.Mocks):
        def new_resource(self, args):  # type: ignore[override]
            return mocks.new_resource(args)

        def call(self, args):  # type: ignore[override]
            return mocks.call(args)

    return _Adapter()


def _run_isolated(body: Callable[[], Any], entries: dict[str, Any], stack: str, region: str, project: str,
                  fleet_mocks: FleetMocks) -> MockedRun:
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.stack import wait_for_rpcs

    nodes: list[Node] = []
    nodes_lock = threading.Lock()

    class _RecordingMonitor(pulumi_mocks.MockMonitor):
        def ReadResource(self, request):  # noqa: N802 - gRPC method name
            # A read (a StackReference) is a step of the engine's plan too.
            response = super().ReadResource(request)
            state, _ = rpc.deserialize_properties_unwrap_secrets(request.properties)
            with nodes_lock:
                nodes.append(Node(urn=response.urn, type=request.type, name=request.name,
                                  parent=request.parent or None, inputs=normalize(copy.deepcopy(state)),
                                  id=request.id or None, custom=True, provider=request.provider or None))
            return response

        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            response = super().RegisterResource(request)
            if request.type != STACK_TYPE:
                inputs, _ = rpc.deserialize_properties_unwrap_secrets(request.object)
                deps = {key: tuple(sorted(d.urns)) for key, d in request.propertyDependencies.items() if d.urns}
                recorded = Node(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    inputs=normalize(copy.deepcopy(inputs)),
                    id=response.id or None,
                    custom=bool(request.custom),
                    property_dependencies=dict(sorted(deps.items())),
                    depends_on=tuple(sorted(request.dependencies)),
                    ignore_changes=tuple(request.ignoreChanges),
                    provider=request.provider or None,
                )
                with nodes_lock:
                    nodes.append(recorded)
            return response

    use_lean_aws_imports()
    handler = _ListHandler()
    logger = logging.getLogger(f"{PROJECT}.offline.{stack}")
    logger.propagate = False
    logger.handlers[:] = [handler]

    try:
        previous_loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous_loop = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        pulumi.runtime.set_all_config(engine_config(entries), [])
        monitor = _RecordingMonitor(_as_pulumi_mocks(fleet_mocks))
        pulumi.runtime.set_mocks(
            monitor.mocks, project=project, stack=stack, preview=False, logger=logger, monitor=monitor,
            organization=MOCK_ORGANIZATION,
        )
        error: BaseException | None = None
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - re-raised after the RPCs drain
            error = exc
        try:
            loop.run_until_complete(wait_for_rpcs())
        except BaseException:  # noqa: BLE001
            if error is None:
                raise
        if error is not None:
            raise error
        root = settings.get_root_resource()
        outputs, secrets = {}, []
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            outputs[key] = normalize(loop.run_until_complete(out.future()))
            if loop.run_until_complete(out.is_secret()):
                secrets.append(key)
        loop.run_until_complete(wait_for_rpcs())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            asyncio.set_event_loop(previous_loop if previous_loop is not None and not previous_loop.is_closed() else None)
    graph = ResourceGraph("plan", stack, region, tuple(sorted(nodes, key=lambda n: n.urn)))
    return MockedRun(graph, outputs, tuple(sorted(secrets)), handler.messages)
