"""EKS rules the mocks cannot know, each encoded as a test that cites its source: Kubernetes
versions and their support windows, capacity blocks, reservation targets."""
from __future__ import annotations

from datetime import date

import pytest

from infra.cli import main
from infra.core import clock
from infra.core.catalog.charts import image
from infra.core.catalog.eks import load_eks_calendar, version_problem
from infra.core.config import ClusterConfig
from tests.conftest import CATALOG_DATE
from tests.program.support import LAUNCH_TEMPLATE, gpu_node_groups, prod_entries, run_variant, with_changes
from tests.program.test_config import write_stack

CAL = load_eks_calendar()
DAY = date.fromisoformat(CATALOG_DATE)


def test_the_suite_runs_on_the_calendars_date():
    assert clock.today() == DAY and CAL.date == CATALOG_DATE


def test_the_default_version_is_the_newest_in_standard_support_on_the_catalog_date():
    """EKS user guide, "Understand the Kubernetes version lifecycle on EKS": a version gets 14
    months of standard support; the default must be one that is still in it."""
    default = ClusterConfig().kubernetes_version
    assert default == "1.35"
    assert CAL.get(default).support_on(DAY) == "standard"
    newer = [v for v in CAL.versions.values() if v.recorded and tuple(map(int, v.version.split("."))) > (1, 35)]
    assert all(v.support_on(DAY) != "standard" for v in newer)


@pytest.mark.parametrize("day, expected", [("2026-07-01", "1.35"), ("2026-12-01", "1.35"), ("2025-06-01", "1.35")])
def test_the_default_follows_the_injected_clock(monkeypatch, day, expected):
    monkeypatch.setenv(clock.TODAY_ENV, day)
    assert ClusterConfig().kubernetes_version == expected


def test_without_a_version_in_standard_support_the_default_says_to_record_newer_ones(monkeypatch):
    from infra.core.errors import UserError

    monkeypatch.setenv(clock.TODAY_ENV, "2027-04-01")  # 1.35 has ended, 1.36 has no recorded dates
    with pytest.raises(UserError, match="record the newer EKS versions"):
        ClusterConfig()


def test_extended_support_ends_twelve_months_after_standard_support():
    """The guide's rule: extended support runs 12 months past the end of standard support."""
    for v in CAL.versions.values():
        if v.recorded:
            std, ext = v.end_of_standard_support, v.end_of_extended_support
            assert (ext.year - std.year) * 12 + ext.month - std.month == CAL.extended_support_months, v.version
            assert ext.day == std.day, v.version


def test_every_version_the_config_accepts_has_an_autoscaler_tag():
    """The Cluster Autoscaler simulates the scheduler of one Kubernetes minor (its README: "use the
    Cluster Autoscaler version that matches the Kubernetes version"): each deployable version
    needs its own tag in charts.yaml."""
    ca = image("cluster-autoscaler")
    for v in CAL.versions.values():
        if v.recorded and v.support_on(DAY) in ("standard", "extended"):
            assert ca.tag_for_kubernetes(v.version).startswith(f"v{v.version}."), v.version


def test_a_config_naming_133_exits_2_with_the_end_date(tmp_path, capsys):
    """EKS standard support for 1.33 ended on 2026-07-29: a new cluster would land in extended
    support ($0.60 instead of $0.10 per cluster-hour) or be refused with STANDARD (the support
    policy can only be set while a version is in standard support)."""
    entries = with_changes(prod_entries(), cluster__kubernetes_version="1.33")
    code = main(["plan", "--stack", "test", "--project-dir", str(write_stack(tmp_path, entries))])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "llm-fleet:cluster.kubernetes_version: '1.33' is not allowed; EKS standard support for 1.33 ended on " \
           "2026-07-29" in err
    assert "upgrade_policy: EXTENDED" in err and "$0.60 instead of $0.10 per cluster-hour" in err
    assert "use 1.35" in err


@pytest.mark.parametrize("version, policy, day, expected", [
    ("1.36", "STANDARD", DAY, "has no support dates"),
    ("1.29", "EXTENDED", DAY, "EKS does not list Kubernetes 1.29"),
    ("1.33", "EXTENDED", date(2027, 8, 1), "extended support for 1.33 ended on 2027-07-29"),
    ("1.34", "STANDARD", date(2026, 12, 2), "standard support for 1.34 ended on 2026-12-02"),
])
def test_versions_out_of_support_are_refused(version, policy, day, expected):
    assert expected in version_problem(version, policy, day)


def test_extended_support_chosen_explicitly_plans_and_is_priced():
    run = run_variant(cluster__kubernetes_version="1.33", cluster__upgrade_policy="EXTENDED")
    cluster = run.one("aws:eks/cluster:Cluster", "cluster").inputs
    assert cluster["version"] == "1.33" and cluster["upgradePolicy"] == {"supportType": "EXTENDED"}
    assert {ng.inputs["version"] for ng in run.of_type("aws:eks/nodeGroup:NodeGroup")} == {"1.33"}
    from infra.core.cost.model import cost_of_document

    report = cost_of_document(run.graph)
    (eks,) = [i for i in report.items if i.component == "eks-control-plane"]
    assert "extended support" in eks.detail and eks.usd_per_month[0] == 438  # $0.60 x 730 h


def test_the_autoscaler_image_follows_the_version():
    run = run_variant(cluster__kubernetes_version="1.34")
    release = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "cluster-autoscaler")
    assert release.inputs["values"]["image"]["tag"] == "v1.34.0"


# -- capacity blocks and reservations -----------------------------------------------------------

BLOCKS = {"us-east-1b": "cr-0123456789abcdef0", "us-east-1d": "cr-0fedcba9876543210"}


@pytest.fixture(scope="module")
def block_run():
    return run_variant(fleet__azs=2, fleet__capacity_type="capacity-block", gpu_nodes__capacity_reservation_ids=BLOCKS)


def test_a_capacity_block_group_names_its_type_in_the_launch_template_only(block_run):
    """EKS user guide, "Create a managed node group with Capacity Blocks for ML": the launch
    template must carry the instance type, the capacity-block market type and the reservation;
    "If … any of the other above required launch template values are missing, then the create
    request will be rejected", and the node group names no instance types."""
    for g in gpu_node_groups(block_run):
        az = g.name.removeprefix("gpu-")
        assert g.inputs["capacityType"] == "CAPACITY_BLOCK"
        assert "instanceTypes" not in g.inputs
        lt = block_run.one(LAUNCH_TEMPLATE, f"gpu-{az}-lt").inputs
        assert lt["instanceType"] == block_run.plan.instance_type
        assert lt["instanceMarketOptions"] == {"marketType": "capacity-block"}
        assert lt["capacityReservationSpecification"] == {"capacityReservationTarget": {"capacityReservationId": BLOCKS[az]}}


def test_a_capacity_block_group_has_no_warm_pool_and_a_fixed_name(block_run):
    """No warm pool: AWS documents none for Capacity Block instances. A fixed name replaced
    delete-first: the block has no room for a second group beside the first."""
    for g in gpu_node_groups(block_run):
        assert "warmPoolConfig" not in g.inputs
        assert g.inputs["nodeGroupName"] == f"llm-fleet-prod-{g.name}"


def test_capacity_block_groups_are_priced_through_their_launch_template(block_run):
    from infra.core.cost.model import cost_of_document

    report = cost_of_document(block_run.graph)
    gpu = [i for i in report.items if i.component == "gpu-nodes"]
    assert len(gpu) == 2 and not report.unpriced


def test_reservations_can_be_targeted_by_resource_group():
    group = "arn:aws:resource-groups:us-east-1:123456789012:group/p5-reservations"
    azs = ["us-east-1a", "us-east-1b", "us-east-1c"]
    run = run_variant(fleet__capacity_type="reservation", network__availability_zones=azs,
                      gpu_nodes__capacity_reservation_resource_group_arn=group)
    for g in gpu_node_groups(run):
        lt = run.one(LAUNCH_TEMPLATE, f"{g.name}-lt").inputs
        assert lt["capacityReservationSpecification"] == {
            "capacityReservationTarget": {"capacityReservationResourceGroupArn": group}}
        assert g.inputs["capacityType"] == "ON_DEMAND" and g.inputs["instanceTypes"] == ["p5.48xlarge"]


@pytest.mark.parametrize("changes, expected", [
    (dict(fleet__capacity_type="capacity-block", network__availability_zones=["us-east-1a", "us-east-1b", "us-east-1c"],
          gpu_nodes__capacity_reservation_resource_group_arn="arn:aws:resource-groups:us-east-1:123456789012:group/g"),
     "capacity blocks are targeted by id"),
    (dict(fleet__capacity_type="reservation",
          gpu_nodes__capacity_reservation_resource_group_arn="arn:aws:resource-groups:us-east-1:123456789012:group/g"),
     "needs network.availability_zones"),
    (dict(gpu_nodes__placement_group_names={"us-east-1a": "pg"}), "needs network.availability_zones"),
    (dict(gpu_nodes__cluster_placement_group=False, gpu_nodes__placement_group_names={"us-east-1a": "pg"}),
     "drop them or cluster_placement_group: false"),
])
def test_reservation_and_placement_config_is_checked(tmp_path, capsys, changes, expected):
    code = main(["plan", "--stack", "test", "--project-dir", str(write_stack(tmp_path, with_changes(prod_entries(), **changes)))])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err


@pytest.mark.parametrize("configured, names, spans, expected", [
    (None, {}, False, (False, None)),
    (None, {}, True, (True, None)),
    (True, {}, False, (True, None)),
    (False, {}, True, (False, None)),
    (None, {"us-east-1a": "pg-a"}, True, (False, "pg-a")),
])
def test_placement_group_choice(configured, names, spans, expected):
    from infra.program.components.gpu_node_group import placement_for

    got = placement_for(configured, names, "us-east-1a", spans)
    assert (got["create_placement_group"], got["placement_group_name"]) == expected
