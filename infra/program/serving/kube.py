"""The thin effectful shell: turn plain manifests and chart rows into pulumi-kubernetes resources.

Builders elsewhere in this package return dicts; these helpers register them. A Helm chart is
always a `helm.v3.Release` (its chart, version and values are visible to the offline plan),
and a custom resource is a `CustomResource` with the builder's spec, unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from infra.core.catalog.charts import ChartRef


def release(
    resource_name: str,
    ref: ChartRef,
    *,
    release_name: str,
    namespace: str,
    values: Mapping[str, Any] | pulumi.Output,
    opts: pulumi.ResourceOptions,
    **extra: Any,
) -> k8s.helm.v3.Release:
    args: dict[str, Any] = dict(
        name=release_name,
        chart=ref.release_chart,
        version=ref.version,
        namespace=namespace,
        values=values if isinstance(values, pulumi.Output) else dict(values),
        # Failed upgrades roll back instead of leaving a half-applied release.
        atomic=extra.pop("atomic", True),
        cleanup_on_fail=True,
        max_history=10,
    )
    if ref.repository_url:
        args["repository_opts"] = k8s.helm.v3.RepositoryOptsArgs(repo=ref.repository_url)
    args.update(extra)
    return k8s.helm.v3.Release(resource_name, **args, opts=opts)


def custom_resource(resource_name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    extra = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata", "spec")}
    if extra:
        raise ValueError(f"{manifest.get('kind')} {resource_name}: only spec is supported, got {sorted(extra)}")
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest.get("spec"),
        opts=opts,
    )


def namespace(resource_name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(resource_name, metadata=manifest["metadata"], opts=opts)


SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"


def skip_await(metadata: Mapping[str, Any]) -> dict:
    """Metadata with Pulumi's skipAwait annotation: for workloads whose readiness depends on
    GPU nodes the autoscaler has yet to add (minutes), so `pulumi up` does not time out."""
    out = dict(metadata)
    out["annotations"] = {**(metadata.get("annotations") or {}), SKIP_AWAIT_ANNOTATION: "true"}
    return out


def with_deps(opts: pulumi.ResourceOptions, deps: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
    """Child options that also wait for `deps` (e.g. the chart that installs a CRD)."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(deps)))
