"""`prices refresh` against recorded Price List API responses (botocore Stubber, no network).

The refresh is pure over the client it is handed; the boto3 client comes from infra.ops.aws."""
import argparse
import json
from decimal import Decimal
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from infra.core.catalog.prices import load_price_book, parse_price_document, render_price_document
from infra.cli import main
from infra.cli import cost as cost_cli
from infra.core.catalog import refresh as rf
from infra.ops import aws

DATA = json.loads((Path(__file__).parent / "data" / "pricing_us-east-2.json").read_text())
REGION = "us-east-2"


def client():
    session = botocore.session.get_session()
    return session.create_client("pricing", region_name="us-east-1", aws_access_key_id="test",
                                 aws_secret_access_key="test")


def expect_ec2(stubber):
    base = {"ServiceCode": "AmazonEC2", "Filters": rf.ec2_filters(REGION), "FormatVersion": "aws_v1", "MaxResults": 100}
    stubber.add_response("get_products", DATA["ec2_pages"][0], base)
    stubber.add_response("get_products", DATA["ec2_pages"][1], {**base, "NextToken": "page-2-token"})


def expect_services(stubber):
    for key, query in rf.SERVICE_QUERIES.items():
        filters = [rf._tm("regionCode", REGION)] + [rf._tm(f, v) for f, v in query.filters]
        stubber.add_response("get_products", DATA["services"][key],
                             {"ServiceCode": query.service_code, "Filters": filters, "FormatVersion": "aws_v1",
                              "MaxResults": 100})


def test_refresh_follows_next_token_and_rewrites_instance_rows():
    c = client()
    with Stubber(c) as stubber:
        expect_ec2(stubber)
        result = rf.refresh(c, load_price_book(), [REGION], today="2026-11-22", services=False)
        stubber.assert_no_pending_responses()
    book = result.book
    row = book.instance(REGION, "p5.48xlarge")
    assert (row.usd, row.confirmed, row.date) == (Decimal("55.04"), True, "2026-11-22")
    assert row.source.startswith("AWS Price List API")
    assert str(book.instance(REGION, "p4d.24xlarge").usd) == "21.957642"
    assert book.instance(REGION, "p5.4xlarge").confirmed  # was absent before: now priced
    assert "p5.4xlarge" not in book.unpriced.get(REGION, {})
    assert book.instance(REGION, "m7i.xlarge").confirmed  # general types refresh too
    assert book.instance(REGION, "c7i.large") is None  # not wanted: not added
    # p5e has no on-demand price in the responses: it stays unpriced, with a dated reason.
    assert book.instance(REGION, "p5e.48xlarge") is None
    assert "Price List API (2026-11-22)" in book.unpriced[REGION]["p5e.48xlarge"]
    assert any(c.startswith(f"{REGION} p5.4xlarge: none -> 6.88") for c in result.changes)
    # Other regions are untouched, and capacity-block rates (not in the Price List API) are kept.
    assert book.instance("us-east-1", "p5.48xlarge") == load_price_book().instance("us-east-1", "p5.48xlarge")
    assert book.capacity_blocks == load_price_book().capacity_blocks and book.capacity_blocks


def test_refresh_services_takes_the_first_tier_and_keeps_unanswered_rows():
    c = client()
    with Stubber(c) as stubber:
        expect_ec2(stubber)
        expect_services(stubber)
        result = rf.refresh(c, load_price_book(), [REGION], today="2026-11-22")
        stubber.assert_no_pending_responses()
    book = result.book
    s3 = book.service(REGION, "s3_standard_usd_per_gb_month")
    assert (str(s3.usd), s3.confirmed) == ("0.023", True)  # first tier, not 0.021
    assert str(book.service(REGION, "s3_get_usd_per_1000_requests").usd) == "0.0004"  # per request x 1000
    assert book.service(REGION, "eks_cluster_usd_per_hour").confirmed
    kept = book.service(REGION, "kms_usd_per_10000_requests")
    assert kept == load_price_book().service(REGION, "kms_usd_per_10000_requests")
    assert any("kms_usd_per_10000_requests: not found" in ch for ch in result.changes)


def test_refreshed_book_renders_to_yaml_that_loads_back_identically():
    c = client()
    with Stubber(c) as stubber:
        expect_ec2(stubber)
        result = rf.refresh(c, load_price_book(), [REGION], today="2026-11-22", services=False)
    text = render_price_document(result.book)
    again = parse_price_document(yaml.safe_load(text))
    assert again == result.book
    assert 'p5.48xlarge: {usd_per_hour: "55.04", source: "AWS Price List API' in text


def _args(tmp_path, **kw):
    return argparse.Namespace(prices=str(tmp_path / "prices.yaml"), region=[REGION], no_services=True,
                              dry_run=kw.get("dry_run", False), json=kw.get("json"))


def test_prices_refresh_command_rewrites_the_file_atomically(tmp_path, capsys):
    target = tmp_path / "prices.yaml"
    target.write_text(render_price_document(load_price_book()))
    c = client()
    with Stubber(c) as stubber:
        expect_ec2(stubber)
        assert cost_cli.cmd_prices_refresh(_args(tmp_path), client=c) == 0
    assert load_price_book(target).instance(REGION, "p5.48xlarge").confirmed
    assert [p.name for p in tmp_path.iterdir()] == ["prices.yaml"]  # no temporary file left
    assert "wrote" in capsys.readouterr().out


def test_prices_refresh_dry_run_writes_nothing(tmp_path):
    target = tmp_path / "prices.yaml"
    original = render_price_document(load_price_book())
    target.write_text(original)
    c = client()
    with Stubber(c) as stubber:
        expect_ec2(stubber)
        cost_cli.cmd_prices_refresh(_args(tmp_path, dry_run=True), client=c)
    assert target.read_text() == original


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    from infra.core.catalog import prices as P

    target = tmp_path / "prices.yaml"
    original = render_price_document(load_price_book())
    target.write_text(original)

    def boom(*a, **k):
        raise OSError("disk full")

    import infra.core.files

    monkeypatch.setattr(infra.core.files.os, "replace", boom)  # the one atomic writer prices go through
    with pytest.raises(OSError):
        P.write_price_document(target, load_price_book())
    assert target.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["prices.yaml"]


def test_the_pricing_client_talks_to_the_us_east_1_endpoint():
    seen = {}

    def factory(service, region_name):
        seen.update(service=service, region=region_name)
        return object()

    aws.pricing_client(factory)
    assert seen == {"service": "pricing", "region": "us-east-1"}


def test_missing_credentials_are_a_user_error_without_traceback(tmp_path, monkeypatch, capsys):
    target = tmp_path / "prices.yaml"
    target.write_text(render_price_document(load_price_book()))

    class NoCreds:
        def get_products(self, **kwargs):
            raise NoCredentialsError()

    monkeypatch.setattr(aws, "pricing_client", lambda factory=None: NoCreds())
    code = main(["prices", "refresh", "--prices", str(target), "--region", REGION])
    err = capsys.readouterr().err
    assert code == 2
    assert "AWS credentials" in err and "Traceback" not in err


def test_every_price_key_has_a_query():
    from infra.core.catalog.prices import SERVICE_KEYS

    assert set(rf.SERVICE_QUERIES) == set(SERVICE_KEYS)
