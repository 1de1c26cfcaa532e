"""KEDA follows the plan; the Cluster Autoscaler is configured for per-AZ GPU groups and least privilege."""
from __future__ import annotations

import json
import math
import re

from infra.core.catalog.charts import image
from infra.program.components.common import AwsContext
from infra.core import metrics
from infra.program.serving import autoscaling, observability, vllm, warm_pool
from infra.program.serving.spec import ServingSpec

from .support import ACCOUNT, CLUSTER, CLUSTER_ARN, TAGS


def test_scaled_object_matches_plan_and_chart(any_spec: ServingSpec):
    so = autoscaling.scaled_object(any_spec)
    spec, plan = so["spec"], any_spec.plan
    values = vllm.vllm_stack_values(any_spec)
    (model,) = values["servingEngineSpec"]["modelSpec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": f"vllm-{model['name']}-deployment-vllm"}
    assert spec["minReplicaCount"] == plan.replicas_baseline
    assert spec["maxReplicaCount"] == plan.replicas_max
    assert so["metadata"]["namespace"] == any_spec.namespace
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    md = trigger["metadata"]
    sel = f'{{model_name="{plan.served_name}"}}'
    assert md["query"] == f"sum(vllm:num_requests_running{sel}) + sum(vllm:num_requests_waiting{sel})"
    assert md["query"] == metrics.in_flight(plan.served_name)
    assert md["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert md["ignoreNullValues"] == "false"
    assert "metricName" not in md  # removed in KEDA 2.12
    assert all(isinstance(v, str) for v in md.values())  # trigger metadata is map[string]string


def test_fallback_never_scales_down_on_missing_metrics(any_spec: ServingSpec):
    fb = autoscaling.scaled_object(any_spec)["spec"]["fallback"]
    assert fb == {"failureThreshold": any_spec.defaults.keda_fallback_failure_threshold,
                  "replicas": any_spec.plan.replicas_baseline, "behavior": "currentReplicasIfHigher"}


def test_rendered_scaled_object_is_the_simulated_control_block(any_spec: ServingSpec):
    """What the fleet simulator ran is what KEDA gets: every field the simulator reads from
    `plan.control` is read back from the rendered ScaledObject, and the trigger's query sums
    exactly the gauges the simulator sums."""
    from infra.core.sizing.simulate.fleet import GAUGES

    c = any_spec.plan.control
    spec = autoscaling.scaled_object(any_spec)["spec"]
    (trigger,) = spec["triggers"]
    beh = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    pods, percent = beh["scaleUp"]["policies"]
    rendered = {
        "query": trigger["metadata"]["query"],
        "threshold": int(trigger["metadata"]["threshold"]),
        "polling": spec["pollingInterval"],
        "min": spec["minReplicaCount"], "max": spec["maxReplicaCount"],
        "up_window": beh["scaleUp"]["stabilizationWindowSeconds"],
        "up_pods": (pods["type"], pods["value"], pods["periodSeconds"]),
        "up_percent": (percent["type"], percent["value"], percent["periodSeconds"]),
        "down_window": beh["scaleDown"]["stabilizationWindowSeconds"],
        "down": [(p["type"], p["value"], p["periodSeconds"]) for p in beh["scaleDown"]["policies"]],
    }
    h = c.hpa
    assert rendered == {
        "query": c.scale_query, "threshold": c.scale_threshold_per_replica, "polling": c.polling_interval_s,
        "min": c.min_replicas, "max": c.max_replicas, "up_window": h.scale_up_stabilization_s,
        "up_pods": ("Pods", h.scale_up_pods, h.scale_up_period_s),
        "up_percent": ("Percent", h.scale_up_percent, h.scale_up_period_s),
        "down_window": h.scale_down_stabilization_s, "down": [("Pods", h.scale_down_pods, h.scale_down_period_s)],
    }
    assert beh["scaleUp"]["selectPolicy"] == "Max"  # the simulator takes the larger policy
    names = re.findall(r"(vllm:[a-z_]+)\{", rendered["query"])
    assert tuple(names) == c.scale_metrics and set(names) <= set(GAUGES)
    # The vLLM scrape interval the simulated signal lags by.
    pm = observability.vllm_pod_monitor(any_spec)["spec"]["podMetricsEndpoints"][0]
    assert pm["interval"] == f"{c.metrics_scrape_interval_s}s"


def test_hpa_behaviour_is_paced_for_gpu_start_times(any_spec: ServingSpec):
    spec = autoscaling.scaled_object(any_spec)["spec"]
    plan = any_spec.plan
    beh = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    up, down = beh["scaleUp"], beh["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0 and up["selectPolicy"] == "Max"
    warm_replicas = plan.warm_spares_per_az * plan.azs * plan.replicas_per_node
    assert {"type": "Pods", "value": max(1, warm_replicas), "periodSeconds": 60} in up["policies"]
    # Scale-down waits longer than a cold node takes to serve, one replica at a time.
    cold_s = warm_pool.total_s(warm_pool.time_to_serve(any_spec)["cold"])
    assert down["stabilizationWindowSeconds"] >= cold_s
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert spec["initialCooldownPeriod"] == math.ceil(any_spec.expected_load_s)


def test_cluster_autoscaler_values(prod_spec: ServingSpec):
    values = autoscaling.cluster_autoscaler_values(prod_spec, CLUSTER, "a-0123")
    args = values["extraArgs"]
    assert args["balance-similar-node-groups"] is True and args["expander"] == "least-waste"
    assert values["autoDiscovery"] == {"clusterName": CLUSTER}
    assert values["awsRegion"] == prod_spec.config.region
    assert values["image"]["tag"] == image("cluster-autoscaler").tag_for_kubernetes(prod_spec.config.cluster.kubernetes_version)
    assert values["image"]["tag"].startswith("v" + prod_spec.config.cluster.kubernetes_version + ".")
    # The labels that differ between the per-AZ groups: ours and EKS's launch-template ones.
    ignored = {v for k, v in args.items() if k.startswith("balancing-ignore-label_")}
    assert ignored == {"llm-fleet/az", "eks.amazonaws.com/sourceLaunchTemplateId",
                       "eks.amazonaws.com/sourceLaunchTemplateVersion"}
    # Placeholders must be able to trigger scale-ups.
    assert warm_pool.placeholder_priority_class(prod_spec)["value"] > args["expendable-pods-priority-cutoff"]
    assert values["rbac"]["serviceAccount"] == {"create": False, "name": prod_spec.defaults.autoscaler_service_account}
    assert values["podAnnotations"] == {autoscaling.ASSOCIATION_ANNOTATION: "a-0123"}


def test_autoscaler_policy_is_scoped():
    ctx = AwsContext(ACCOUNT, "us-east-1")
    doc = json.loads(autoscaling.autoscaler_policy(ctx, CLUSTER))
    actions = [a for s in doc["Statement"] for a in s["Action"]]
    assert not any("*" in a for a in actions)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    write = by_sid["ScaleThisClustersGroups"]
    assert write["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert write["Condition"] == {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}": "owned"}}
    assert write["Resource"].startswith(f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:")
    assert by_sid["DescribeThisClustersNodegroups"]["Resource"] == f"arn:aws:eks:us-east-1:{ACCOUNT}:nodegroup/{CLUSTER}/*/*"
    # Only describe calls (which have no resource-level permissions) use "*".
    star = [s for s in doc["Statement"] if s["Resource"] == "*"]
    assert all(a.split(":")[1].startswith("Describe") for s in star for a in s["Action"])


def test_registered_autoscaling(serving_run, prod_spec: ServingSpec):
    rels = serving_run.releases()
    assert rels["keda"].inputs["version"] == "2.20.2"
    ca = rels["cluster-autoscaler"]
    association_id = ca.inputs["values"]["podAnnotations"][autoscaling.ASSOCIATION_ANNOTATION]
    assert association_id.startswith("a-")
    assert ca.inputs["values"] == autoscaling.cluster_autoscaler_values(prod_spec, CLUSTER, association_id)
    # The ScaledObject is the vllm-stack release's (its modelSpec.keda), after KEDA's CRDs.
    assert not serving_run.of_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
    (model,) = rels["vllm"].inputs["values"]["servingEngineSpec"]["modelSpec"]
    assert model["keda"] == autoscaling.keda_chart_values(prod_spec)
    assert serving_run.depends_on(rels["vllm"], rels["keda"])
    # The chart's AWS identity is the base project's (identities.py): nothing AWS here.
    assert not [r for r in serving_run.resources if r.type.startswith("aws:")]


def test_autoscaler_identity_is_pinned_to_the_charts_service_account(prod_spec: ServingSpec):
    from infra.program.serving.identities import ClusterAutoscalerIdentity, ClusterAutoscalerIdentityArgs

    from . import mockrun

    d = prod_spec.defaults
    run = mockrun.run(lambda: ClusterAutoscalerIdentity("cluster-autoscaler", ClusterAutoscalerIdentityArgs(
        aws=AwsContext(ACCOUNT, "us-east-1"), cluster_name=CLUSTER, cluster_arn=CLUSTER_ARN,
        namespace=d.autoscaler_namespace, service_account=d.autoscaler_service_account, tags=TAGS)))
    assoc = run.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "cluster-autoscaler")
    values = autoscaling.cluster_autoscaler_values(prod_spec, CLUSTER, "a-0123456789abcdef0")
    assert (assoc.inputs["namespace"], assoc.inputs["serviceAccount"]) == (
        d.autoscaler_namespace, values["rbac"]["serviceAccount"]["name"])
    assert assoc.inputs["clusterName"] == CLUSTER
    role = run.one("aws:iam/role:Role", "-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"]["ArnEquals"]["aws:SourceArn"] == CLUSTER_ARN
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "-policy")
    assert json.loads(policy.inputs["policy"]) == json.loads(autoscaling.autoscaler_policy(AwsContext(ACCOUNT, "us-east-1"), CLUSTER))


def test_project_policy_pack_accepts_the_serving_resources(serving_run):
    """The CrossGuard rules (policies/) run offline over what Serving registers."""
    from policies import POLICIES
    from policies import config_for_stack, evaluate
    from pulumi_policy import ResourceValidationPolicy

    rules = [p for p in POLICIES if isinstance(p, ResourceValidationPolicy)]
    violations = evaluate([r.to_dict() for r in serving_run.resources], config_for_stack("prod"), policies=rules)
    assert violations == []


def _control_as_rendered(spec_: ServingSpec):
    """The control block read back from the rendered objects (what KEDA, the HPA and Envoy will
    run): the ScaledObject's trigger, bounds and behaviour, and the admission limit per engine
    from the per-endpoint circuit breaker and the Envoy replicas."""
    import dataclasses

    from infra.program.serving import ingress

    from .support import TAGS

    from infra.program.serving import vllm

    from . import chart_render

    control = spec_.plan.control
    rendered = chart_render.render(vllm.vllm_stack_values(spec_), spec_.defaults.vllm_release, spec_.namespace)
    (so,) = rendered["vllm-stack/templates/scaledobject-vllm.yaml"]
    spec = so["spec"]
    cb = ingress.backend_traffic_policy(spec_)["spec"]["circuitBreaker"]
    proxies = ingress.envoy_proxy(spec_, TAGS)["spec"]["provider"]["kubernetes"]["envoyDeployment"]["replicas"]
    (trigger,) = spec["triggers"]
    beh = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    pods, percent = beh["scaleUp"]["policies"]
    (down,) = beh["scaleDown"]["policies"]
    hpa = dataclasses.replace(
        control.hpa, scale_up_stabilization_s=beh["scaleUp"]["stabilizationWindowSeconds"],
        scale_up_pods=pods["value"], scale_up_percent=percent["value"], scale_up_period_s=pods["periodSeconds"],
        scale_down_stabilization_s=beh["scaleDown"]["stabilizationWindowSeconds"], scale_down_pods=down["value"],
        scale_down_period_s=down["periodSeconds"])
    return dataclasses.replace(
        control, scale_query=trigger["metadata"]["query"], scale_metrics=tuple(re.findall(r"(vllm:[a-z_]+)\{",
                                                                                            trigger["metadata"]["query"])),
        scale_threshold_per_replica=int(trigger["metadata"]["threshold"]), polling_interval_s=spec["pollingInterval"],
        min_replicas=spec["minReplicaCount"], max_replicas=spec["maxReplicaCount"], hpa=hpa,
        gateway_proxies=proxies, admission_connections_per_proxy=cb["perEndpoint"]["maxConnections"],
        admission_limit_per_replica=cb["perEndpoint"]["maxConnections"] * proxies)


def test_the_rendered_objects_are_the_control_block(any_spec: ServingSpec):
    assert _control_as_rendered(any_spec) == any_spec.plan.control


def test_in_a_burst_replicas_rise_above_baseline_before_attainment_falls_under_the_rendered_trigger():
    """A burst that ramps slower than a warm spare takes to serve (one spare node per AZ, so the
    plan keeps burst headroom): the fleet, run with the trigger read back from the rendered
    ScaledObject, adds replicas before any interval's joint attainment drops below 95 %."""
    import dataclasses

    from infra.core.sizing.simulate.scenarios import run_scenario
    from infra.core.sizing.simulate.workload import Lengths

    from .support import spec_for

    spec = spec_for("slow-burst")
    plan = spec.plan
    assert plan.replicas_max > plan.replicas_baseline, "the plan must keep headroom for this burst"
    rendered = _control_as_rendered(spec)
    assert rendered == plan.control
    w = spec.config.workload
    run = run_scenario(dataclasses.replace(plan, control=rendered), w, "burst",
                       lengths=Lengths(w.input_tokens, w.output_tokens), rate_per_s=plan.load["arrival_rate_per_s"])
    timeline = run.timeline({"ttft": w.ttft_p95_ms, "tpot": w.tpot_p95_ms, "e2e": w.e2e_p95_ms})
    rise = next(i for i, row in enumerate(timeline) if row["replicas_ready"] > plan.replicas_baseline)
    fall = next((i for i, row in enumerate(timeline) if (row["attainment_pct"] or 100) < 95), None)
    assert fall is None or rise < fall, (rise, fall)
    assert run.result.passed and run.result.replicas_max > plan.replicas_baseline
    assert max(row["spares_in_use"] for row in timeline) > 0  # the first new replicas came from the spares
