"""The price book: coverage of the catalog and regions, provenance on every row, round trip."""
from decimal import Decimal

import pytest
import yaml

from infra.core.catalog import load_catalog
from infra.core.catalog.prices import (
    GLOBAL_SERVICE_KEYS,
    PRICES_PATH,
    REQUIRED_REGIONS,
    SERVICE_KEYS,
    load_price_book,
    parse_price_document,
    render_price_document,
)
from infra.core.errors import InputError

BOOK = load_price_book()
CATALOG = load_catalog()


@pytest.mark.parametrize("region", REQUIRED_REGIONS)
def test_every_catalog_instance_is_priced_or_explained_in_every_required_region(region):
    for itype in CATALOG.instances:
        row = BOOK.instance(region, itype)
        assert row is not None or BOOK.why_unpriced(region, itype), f"{itype} in {region}: no price and no reason"
        if row is not None:
            assert row.usd > 0


@pytest.mark.parametrize("region", REQUIRED_REGIONS)
def test_every_service_price_exists_in_every_required_region(region):
    for key in SERVICE_KEYS:
        row = BOOK.service(region, key)
        assert row is not None and row.usd > 0, f"{key} in {region}"


def test_every_row_names_source_and_date_and_estimates_say_how():
    for section in ("instances", "general_instances", "services", "capacity_blocks"):
        for region, rows in getattr(BOOK, section).items():
            for key, row in rows.items():
                assert row.source and row.date, (section, region, key)
                assert isinstance(row.usd, Decimal)
                if not row.confirmed:
                    assert row.basis, f"unconfirmed {section}.{region}.{key} must say how it was derived"


def test_every_route53_price_is_a_global_row_with_its_provenance():
    """Route 53 bills per account whatever the region: one row per key, not one per region."""
    assert set(BOOK.global_services) == set(GLOBAL_SERVICE_KEYS)
    for key, row in BOOK.global_services.items():
        assert row.source and row.date and row.usd > 0, key
        assert row.confirmed or row.basis, f"unconfirmed global_services.{key} must say how it was derived"
    latency, standard = (BOOK.require_global_service(f"route53_{k}_queries_usd_per_million") for k in ("latency", "standard"))
    assert latency.usd > standard.usd  # latency-based queries are dearer than standard ones
    assert ("global_services", "", "route53_hosted_zone_usd_per_month") in BOOK.unconfirmed()


def test_the_us_east_1_gpu_prices_are_the_confirmed_karpenter_figures():
    expected = {"p5.48xlarge": "55.04", "p5.4xlarge": "6.88", "p5en.48xlarge": "63.296", "p4d.24xlarge": "21.957642",
                "g6e.12xlarge": "10.49264", "g6e.48xlarge": "30.13118", "g6e.xlarge": "1.861", "g6e.2xlarge": "2.24208",
                "g6.xlarge": "0.8048", "g6.2xlarge": "0.9776", "g5.xlarge": "1.006", "g5.2xlarge": "1.212"}
    for itype, usd in expected.items():
        row = BOOK.instance("us-east-1", itype)
        assert row.usd == Decimal(usd) and row.confirmed and "karpenter" in row.source
    assert "capacity blocks" in BOOK.why_unpriced("us-east-1", "p5e.48xlarge")


@pytest.mark.parametrize("capacity_type", ["on-demand", "reservation"])
def test_on_demand_and_reservations_bill_at_the_on_demand_rate(capacity_type):
    assert BOOK.capacity_price("us-east-1", "p5.48xlarge", capacity_type) == BOOK.instance("us-east-1", "p5.48xlarge")


def test_capacity_block_rows_are_estimates_that_say_how():
    row = BOOK.capacity_price("us-east-1", "p5.48xlarge", "capacity-block")
    assert row is not None and not row.confirmed and "describe_capacity_block_offerings" in row.basis
    assert row.usd < BOOK.instance("us-east-1", "p5.48xlarge").usd
    assert BOOK.capacity_price("us-east-1", "p5.4xlarge", "capacity-block") is None
    assert ("capacity_blocks", "us-east-1", "p5.48xlarge") in BOOK.unconfirmed()


def test_sizing_and_the_cost_model_price_from_the_one_price_book():
    from infra.core.cost import node_hour_price
    from infra.core.resolve import resolve

    plan = resolve("prod").plan
    row = BOOK.instance(plan.region, plan.instance_type)
    assert Decimal(str(plan.cost.usd_per_node_hour)) == row.usd  # the price the fleet was sized with
    assert node_hour_price(plan.instance_type, plan.region) == (row.usd, f"{row.source} ({row.date})")


def test_the_file_is_exactly_what_the_writer_renders():
    # A refresh rewrites the whole file; a hand edit that the writer would not produce would
    # show up as noise in the next refresh's diff.
    assert PRICES_PATH.read_text() == render_price_document(BOOK)
    assert parse_price_document(yaml.safe_load(render_price_document(BOOK))) == BOOK


@pytest.mark.parametrize("doc,field", [
    ({"instances": {"us-east-1": {"p5.48xlarge": {"usd_per_hour": "abc", "source": "s", "date": "d"}}}}, "usd_per_hour"),
    ({"instances": {"us-east-1": {"p5.48xlarge": {"usd_per_hour": "-1", "source": "s", "date": "d"}}}}, "usd_per_hour"),
    ({"instances": {"us-east-1": {"p5.48xlarge": {"usd_per_hour": "1", "date": "d"}}}}, "source"),
    ({"services": {"us-east-1": {"nat_usd": {"usd": "1", "source": "s", "date": "d"}}}}, "nat_usd"),
    ({"services": {"us-east-1": {"kms_key_usd_per_month": {"usd": "1", "source": "s", "date": "d", "confirmed": "yes"}}}},
     "confirmed"),
    ({"spot": {}}, "spot"),
    ({"global_services": {"route53_zone_usd": {"usd": "1", "source": "s", "date": "d"}}}, "route53_zone_usd"),
    ({"global_services": {"route53_hosted_zone_usd_per_month": {"usd": "1", "date": "d"}}}, "source"),
])
def test_bad_rows_name_the_field(doc, field):
    with pytest.raises(InputError) as exc:
        parse_price_document(doc)
    assert field in str(exc.value)


def test_require_service_says_how_to_fix_a_missing_region():
    with pytest.raises(InputError, match="prices refresh"):
        BOOK.require_service("sa-east-1", "nat_gateway_usd_per_hour")
