"""A stack's two Pulumi projects as one `Workspace`: the deploy path `deploy` and `rollout` share.

`StackWorkspace` runs the base (where the operator is) and the workloads (`InVpcWorkspace` in the
VPC for a private endpoint, an `AutomationWorkspace` otherwise) in this order:

    up:      1. the base without its GPU node groups (`--exclude` + dependents): network, cluster,
                system nodes, IAM, S3, the deployer; its outputs (the kubeconfig) are then there
             2. the workloads, against those outputs
             3. the base again, in full and with `--continue-on-error`: the GPU node groups. An AZ
                without capacity fails only its own group; serving is already up on the others.
    preview: the base, then the workloads if the base stack has outputs (a first deploy has no
             cluster to preview against: the pack still runs during its up)
    destroy: the workloads, then the wait until the gateway's load balancer is gone (it lives
             in the VPC, behind a Service finalizer), then the base

Only interfaces are touched here (`infra.core.rollout.interfaces`); tests drive it with fakes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from infra.core import deploy
from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import (
    InVpcRunner,
    OnOutput,
    PreviewOutcome,
    ProjectWorkspace,
    UpOutcome,
)

# (stack, `pulumi preview --json` document) -> the pack's violations over it, as the engine reports them.
PolicyEvaluator = Callable[[str, Mapping[str, Any]], list[dict[str, str]]]


class LoadBalancerWaiter(Protocol):
    def wait_gone(self, stack: str, cluster_name: str, *, on_output: OnOutput) -> None:
        """Return once no load balancer of the cluster is left; raise WorkspaceError on timeout."""
        ...


def _failed(stack: str, what: str, result: Any) -> WorkspaceError:
    tail = " | ".join(result.log_tail[-8:]) if result.log_tail else "no log"
    return WorkspaceError(f"{stack}: {what} in the VPC: build {result.build_id} {result.status}: {tail}")


class InVpcWorkspace:
    """The workloads project run by the stack's in-VPC deployer (a `ProjectWorkspace`).

    Preview documents come back through the build's log; the pack's verdict over them is the
    offline evaluator's (the same rules, `evaluate_policies`). Outputs are read where the operator
    is (`outputs_from`): the state backend needs no cluster.
    """

    def __init__(self, runner: InVpcRunner, *, evaluate_policies: PolicyEvaluator, outputs_from: ProjectWorkspace) -> None:
        self.runner = runner
        self.evaluate_policies = evaluate_policies
        self.outputs_from = outputs_from

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome:
        result = self.runner.run(stack, deploy.PREVIEW, on_output=on_output)
        document = result.document if isinstance(result.document, Mapping) else None
        if document is None:
            raise _failed(stack, "workloads preview", result)
        violations = self.evaluate_policies(stack, document)
        if not result.succeeded and not any(v.get("enforcement") == "mandatory" for v in violations):
            raise _failed(stack, "workloads preview", result)
        changes = {str(k): int(v) for k, v in (document.get("changeSummary") or {}).items()}
        return PreviewOutcome(changes=changes, policy_violations=tuple(violations), document=document)

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None,
           exclude: Sequence[str] = (), continue_on_error: bool = False) -> UpOutcome:
        if exclude:
            raise WorkspaceError(f"{stack}: the in-VPC deployer updates the whole workloads project (no --exclude)")
        text = None
        if config_file is not None:
            with open(config_file, encoding="utf-8") as fh:
                text = fh.read()
        result = self.runner.run(stack, deploy.UP, on_output=on_output, config_text=text)
        if not result.succeeded:
            raise _failed(stack, "workloads up", result)
        return UpOutcome(result="succeeded", outputs=dict(self.outputs(stack)))

    def refresh(self, stack: str, *, on_output: OnOutput) -> None:
        self._run(stack, deploy.REFRESH, on_output)

    def destroy(self, stack: str, *, on_output: OnOutput) -> None:
        self._run(stack, deploy.DESTROY, on_output)

    def outputs(self, stack: str) -> Mapping[str, Any]:
        return self.outputs_from.outputs(stack)

    def _run(self, stack: str, action: str, on_output: OnOutput) -> None:
        result = self.runner.run(stack, action, on_output=on_output)
        if not result.succeeded:
            raise _failed(stack, f"workloads {action}", result)


class ByStack:
    """A `ProjectWorkspace` that picks one per stack: an environment's stacks may differ (one in
    the VPC, one with a public endpoint)."""

    def __init__(self, pick: Callable[[str], ProjectWorkspace]) -> None:
        self.pick = pick

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome:
        return self.pick(stack).preview(stack, policy_packs=policy_packs, on_output=on_output)

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None,
           exclude: Sequence[str] = (), continue_on_error: bool = False) -> UpOutcome:
        return self.pick(stack).up(stack, on_output=on_output, config_file=config_file, exclude=exclude,
                                   continue_on_error=continue_on_error)

    def refresh(self, stack: str, *, on_output: OnOutput) -> None:
        self.pick(stack).refresh(stack, on_output=on_output)

    def destroy(self, stack: str, *, on_output: OnOutput) -> None:
        self.pick(stack).destroy(stack, on_output=on_output)

    def outputs(self, stack: str) -> Mapping[str, Any]:
        return self.pick(stack).outputs(stack)


def _merge_changes(*parts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def merge_preview_documents(base: Mapping[str, Any] | None, workloads: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """One `pulumi preview --json`-shaped document of both projects (steps of both; the base's config)."""
    if base is None:
        return None
    if workloads is None:
        return dict(base)
    return {**base, "steps": list(base.get("steps") or []) + list(workloads.get("steps") or []),
            "changeSummary": _merge_changes(base.get("changeSummary") or {}, workloads.get("changeSummary") or {})}


@dataclass
class StackWorkspace:
    """Both projects of a stack behind the rollout's `Workspace` (and `deploy`'s `destroy`)."""

    base: ProjectWorkspace
    workloads: ProjectWorkspace
    gpu_urns: Callable[[str], Sequence[str]]  # the base's GPU node groups and their children (from the offline plan)
    config_text_of: Callable[[str], str]
    load_balancers: LoadBalancerWaiter | None = None

    def _deployed(self, stack: str) -> Mapping[str, Any]:
        try:
            return self.base.outputs(stack)
        except WorkspaceError as exc:
            if exc.kind == "not-found":
                return {}
            raise

    def preview(self, stack: str, *, policy_packs: Sequence[str], on_output: OnOutput) -> PreviewOutcome:
        base = self.base.preview(stack, policy_packs=policy_packs, on_output=on_output)
        if not self._deployed(stack).get(deploy.OUT_KUBECONFIG):
            on_output(f"{stack}: workloads not previewed: the base stack has no cluster yet (first deploy); "
                      "its policy pack runs during its up")
            return base
        work = self.workloads.preview(stack, policy_packs=policy_packs, on_output=on_output)
        return PreviewOutcome(
            changes=_merge_changes(base.changes, work.changes),
            policy_violations=tuple(base.policy_violations) + tuple(work.policy_violations),
            document=merge_preview_documents(base.document, work.document),
            policy_evaluated=base.policy_evaluated and work.policy_evaluated,
        )

    def up(self, stack: str, *, on_output: OnOutput, config_file: str | None = None) -> UpOutcome:
        gpu = list(self.gpu_urns(stack))
        on_output(f"{stack}: 1/3 base without its {len(gpu)} GPU node group resources")
        first = self.base.up(stack, on_output=on_output, config_file=config_file, exclude=gpu)
        on_output(f"{stack}: 2/3 workloads")
        work = self.workloads.up(stack, on_output=on_output, config_file=config_file)
        on_output(f"{stack}: 3/3 base in full (GPU node groups; continue on error)")
        try:
            full = self.base.up(stack, on_output=on_output, config_file=config_file, continue_on_error=True)
        except WorkspaceError as exc:
            raise WorkspaceError(
                f"{exc}; the cluster and the in-cluster layer are up, so AZs whose GPU node groups were created "
                "serve; rerun when the failed groups can be created (capacity, quota)", kind=exc.kind) from None
        changes = _merge_changes(first.changes, work.changes, full.changes)
        ok = all(r.result == "succeeded" for r in (first, work, full))
        return UpOutcome(result="succeeded" if ok else "failed", changes=changes, outputs=dict(full.outputs))

    def refresh(self, stack: str, *, on_output: OnOutput) -> None:
        self.base.refresh(stack, on_output=on_output)
        if self._deployed(stack).get(deploy.OUT_KUBECONFIG):
            self.workloads.refresh(stack, on_output=on_output)

    def destroy(self, stack: str, *, on_output: OnOutput) -> None:
        """Workloads first; the gateway's load balancer gone; then the base (and its VPC)."""
        deployed = self._deployed(stack)
        if deployed.get(deploy.OUT_KUBECONFIG):
            on_output(f"{stack}: 1/3 destroy the workloads")
            self.workloads.destroy(stack, on_output=on_output)
        if self.load_balancers is not None and deployed.get(deploy.OUT_CLUSTER_NAME):
            on_output(f"{stack}: 2/3 wait for the cluster's load balancers to be deleted")
            self.load_balancers.wait_gone(stack, str(deployed[deploy.OUT_CLUSTER_NAME]), on_output=on_output)
        on_output(f"{stack}: 3/3 destroy the base")
        self.base.destroy(stack, on_output=on_output)

    def outputs(self, stack: str) -> Mapping[str, Any]:
        return self.base.outputs(stack)

    def config_text(self, stack: str) -> str:
        return self.config_text_of(stack)
