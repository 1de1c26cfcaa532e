"""`interfaces.Workspace` over the Pulumi Automation API (`pulumi.automation`, imported lazily).

Each stack is the local program in the repository (`create_or_select_stack(stack_name=...,
work_dir=<repo>)`), so a rollout runs exactly what `pulumi up -s <stack>` runs. Previews run
with the policy pack (`policy_packs=[...]`, and the stack's pack config file from
`pack_config_for(stack)`: the command layer checks it against the stack config first) and
`--json`, so the same document feeds the cost model; policy violations are collected from the
engine's policy events.

The Automation API shells out to the `pulumi` CLI; its errors become `WorkspaceError`s that say
what to do: `ConcurrentUpdateError` (another update holds the stack), `StackNotFoundError`,
a missing CLI, or a failed command (its last lines of stderr).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import OnOutput, PreviewOutcome, UpOutcome

_STDERR_TAIL_LINES = 8


def _tail(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:])


class AutomationWorkspace:
    """One Pulumi project (the directory holding its Pulumi.yaml) as a `Workspace` and a
    `ProjectWorkspace`. Policy packs and the committed pack configs are found under `repo_dir`
    (default: the project directory), the repository root for the workloads project."""

    def __init__(self, work_dir: Path | str, *, pack_config_for: Callable[[str], str | None] | None = None,
                 env: Mapping[str, str] | None = None, repo_dir: Path | str | None = None,
                 up_policy_packs: Sequence[str] = ()) -> None:
        self.work_dir = Path(work_dir)
        self.repo_dir = Path(repo_dir) if repo_dir is not None else self.work_dir
        self.up_policy_packs = tuple(up_policy_packs)  # `up` runs these packs too (as `deploy` does)
        self.pack_config_for = pack_config_for or self._committed_pack_config
        self.env = dict(env or {})
        self._stacks: dict[str, Any] = {}

    # --- plumbing ------------------------------------------------------------------------

    def _map_error(self, stack: str, what: str, exc: BaseException) -> WorkspaceError:
        from pulumi.automation import errors as auto_errors

        if isinstance(exc, FileNotFoundError):
            return WorkspaceError(
                "the pulumi CLI is not installed or not on PATH (the Automation API runs it); install it, "
                "or use --dry-run, which works offline", kind="unavailable")
        if isinstance(exc, auto_errors.ConcurrentUpdateError):
            return WorkspaceError(
                f"{stack}: {what}: another update holds the stack's lock (ConcurrentUpdateError); wait for it, or if "
                f"none is running, `pulumi cancel -s {stack}`, then --resume", kind="locked")
        if isinstance(exc, auto_errors.StackNotFoundError):
            return WorkspaceError(f"{stack}: {what}: stack not found in the backend (`pulumi stack init {stack}`)",
                                  kind="not-found")
        if isinstance(exc, auto_errors.CommandError):
            return WorkspaceError(f"{stack}: {what} failed: {_tail(str(exc))}")
        return WorkspaceError(f"{stack}: {what} failed: {exc.__class__.__name__}: {exc}")

    def _stack(self, stack: str) -> Any:
        if stack not in self._stacks:
            from pulumi import automation as auto

            try:
                opts = auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), env_vars=self.env or None)
                self._stacks[stack] = auto.create_or_select_stack(stack_name=stack, work_dir=str(self.work_dir), opts=opts)
            except Exception as exc:  # noqa: BLE001 - mapped to a user-facing error
                raise self._map_error(stack, "select stack", exc) from None
        return self._stacks[stack]

    def _committed_pack_config(self, stack: str) -> str | None:
        path = self.repo_dir / "policies" / f"config.{stack}.json"
        return str(path) if path.is_file() else None

    def _pack_configs(self, stack: str) -> list[str] | None:
        path = self.pack_config_for(stack)
        return [path] if path else None

    def _packs(self, policy_packs: Sequence[str]) -> list[str]:
        return [str(self.repo_dir / p) if not Path(p).is_absolute() else p for p in policy_packs]

    # --- Workspace -----------------------------------------------------------------------

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome:
        s = self._stack(stack)
        violations: list[dict[str, str]] = []

        def on_event(event: Any) -> None:
            pe = getattr(event, "policy_event", None)
            if pe is not None:
                violations.append({
                    "policy": pe.policy_name, "enforcement": str(pe.enforcement_level).lower(),
                    "urn": pe.resource_urn or "", "message": pe.message,
                })

        packs = self._packs(policy_packs)
        try:
            result = s.preview(policy_packs=packs, policy_pack_configs=self._pack_configs(stack),
                               on_event=on_event, json=True, diff=False)
        except Exception as exc:  # noqa: BLE001
            if any(v["enforcement"] == "mandatory" for v in violations):
                # A mandatory violation fails the preview command: report it as the policy gate's finding.
                return PreviewOutcome(changes={}, policy_violations=tuple(violations), document=None)
            raise self._map_error(stack, "preview", exc) from None
        document = None
        try:
            document = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
        except json.JSONDecodeError:
            document = None
        if document is not None:
            on_output(f"preview: {len(document.get('steps') or [])} steps")
        changes = {str(k): int(v) for k, v in (result.change_summary or {}).items()}
        return PreviewOutcome(changes=changes, policy_violations=tuple(violations), document=document)

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None,
           exclude: Sequence[str] = (), continue_on_error: bool = False) -> UpOutcome:
        s = self._stack(stack)
        kwargs: dict[str, Any] = {"config_file": config_file}
        if self.up_policy_packs:
            kwargs.update(policy_packs=self._packs(self.up_policy_packs), policy_pack_configs=self._pack_configs(stack))
        if exclude:  # `pulumi up --exclude URN... --exclude-dependents`
            kwargs.update(exclude=list(exclude), exclude_dependents=True)
        if continue_on_error:
            kwargs["continue_on_error"] = True
        try:
            result = s.up(on_output=on_output, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(stack, "up", exc) from None
        summary = result.summary
        changes = {str(k): int(v) for k, v in (getattr(summary, "resource_changes", None) or {}).items()}
        outputs = {k: v.value for k, v in (result.outputs or {}).items()}
        return UpOutcome(result=str(getattr(summary, "result", "succeeded")), changes=changes, outputs=outputs)

    def _call(self, stack: str, what: str, call: Callable[[Any], Any]) -> Any:
        s = self._stack(stack)
        try:
            return call(s)
        except Exception as exc:  # noqa: BLE001 - mapped to a user-facing error
            raise self._map_error(stack, what, exc) from None

    def refresh(self, stack: str, *, on_output: OnOutput) -> None:
        self._call(stack, "refresh", lambda s: s.refresh(on_output=on_output))

    def destroy(self, stack: str, *, on_output: OnOutput) -> None:
        self._call(stack, "destroy", lambda s: s.destroy(on_output=on_output))

    def outputs(self, stack: str) -> Mapping[str, Any]:
        return self._call(stack, "outputs", lambda s: {k: v.value for k, v in s.outputs().items()})

    def config_text(self, stack: str) -> str:
        path = self.repo_dir / f"Pulumi.{stack}.yaml"
        return path.read_text() if path.is_file() else ""
