"""Fakes for the deploy path's edges: a project workspace and an in-VPC runner that record calls."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import InVpcResult, PreviewOutcome, UpOutcome


class FakeProject:
    """A `ProjectWorkspace`; `fail` maps an op ("up", "up-full", "preview", ...) to an exception."""

    def __init__(self, name: str, calls: list, outputs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.calls = calls  # shared between projects: the order across them is what is tested
        self.deployed = dict(outputs or {})
        self.fail: dict[str, BaseException] = {}
        self.preview_document: dict[str, Any] = {"steps": [{"op": "create", "urn": f"urn:{name}"}],
                                                 "changeSummary": {"create": 1}}
        self.violations: list[dict[str, str]] = []

    def _record(self, op: str, **details: Any) -> None:
        self.calls.append((self.name, op, details))
        if op in self.fail:
            raise self.fail[op]

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: Callable[[str], None]) -> PreviewOutcome:
        self._record("preview", stack=stack)
        return PreviewOutcome(changes=dict(self.preview_document["changeSummary"]),
                              policy_violations=tuple(self.violations), document=self.preview_document)

    def up(self, stack: str, *, on_output: Callable[[str], None], config_file: str | None = None,
           exclude: Sequence[str] = (), continue_on_error: bool = False) -> UpOutcome:
        op = "up-full" if continue_on_error else "up"
        self._record(op, stack=stack, exclude=tuple(exclude), config_file=config_file)
        return UpOutcome(result="succeeded", changes={"create": 2}, outputs=dict(self.deployed))

    def refresh(self, stack: str, *, on_output: Callable[[str], None]) -> None:
        self._record("refresh", stack=stack)

    def destroy(self, stack: str, *, on_output: Callable[[str], None]) -> None:
        self._record("destroy", stack=stack)

    def outputs(self, stack: str) -> Mapping[str, Any]:
        if "outputs" in self.fail:
            raise self.fail["outputs"]
        return dict(self.deployed)


class FakeRunner:
    """An `InVpcRunner` answering each action with `results[action]` (default: SUCCEEDED, no document)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, dict, str | None]] = []
        self.results: dict[str, InVpcResult] = {}

    def run(self, stack: str, action: str, *, on_output: Callable[[str], None], env: Mapping[str, str] | None = None,
            config_text: str | None = None) -> InVpcResult:
        self.runs.append((stack, action, dict(env or {}), config_text))
        on_output(f"build of {action}")
        return self.results.get(action, InVpcResult(f"p:{len(self.runs)}", "SUCCEEDED"))


def locked() -> WorkspaceError:
    return WorkspaceError("prod: up: another update holds the stack's lock", kind="locked")
