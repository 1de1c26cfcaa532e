"""`python -m infra prices refresh`: re-read prices from the AWS Price List API.

Pure over an injected client: `refresh(client, ...)` calls only `client.get_products`. The boto3
client itself is made at the edge (`infra.ops.aws.pricing_client`, handed in by
`infra/cli/cost.py`), so nothing here imports boto3.

* Instances: `pricing.get_products(ServiceCode="AmazonEC2")` with TERM_MATCH filters on
  regionCode, operatingSystem=Linux, preInstalledSw=NA, capacitystatus=Used,
  marketoption=OnDemand, tenancy=Shared (karpenter's query), paginated by NextToken; each
  PriceList entry is a JSON string whose price sits at
  `terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`. Every GPU type of the catalog and
  every general type already in the price book is kept; a GPU type the API does not list moves
  to `unpriced` (its old estimate is dropped: the API is authoritative).
* Services: one query per price key (`SERVICE_QUERIES`), matched on `usagetype` suffixes.
  These attribute values follow the Price List API's published product attributes but were not
  checked against the live API from this repository (no AWS access here); a key the API does
  not answer keeps its old row and is reported.

* Managed-API prices (`--api-models`): the Bedrock rows of `api_models`, from ServiceCode
  AmazonBedrock (`refresh_api_models`, below); OpenAI and Anthropic have no price API.

The file is rewritten atomically (infra.core.catalog.prices.write_price_document).
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Iterator, Mapping

from infra.core.catalog import Catalog, load_catalog
from infra.core.catalog.prices import PriceBook, PriceRow, SERVICE_KEYS

EC2_SOURCE = "AWS Price List API (pricing.get_products AmazonEC2, on-demand Linux shared)"


def _tm(field: str, value: str) -> dict[str, str]:
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


def ec2_filters(region: str) -> list[dict[str, str]]:
    return [
        _tm("regionCode", region),
        _tm("operatingSystem", "Linux"),
        _tm("preInstalledSw", "NA"),
        _tm("capacitystatus", "Used"),
        _tm("marketoption", "OnDemand"),
        _tm("tenancy", "Shared"),
    ]


@dataclass(frozen=True)
class ServiceQuery:
    service_code: str
    filters: tuple[tuple[str, str], ...]  # TERM_MATCH (field, value) besides regionCode
    usagetype_suffix: str
    per_units: int = 1  # the price key's unit in API units (1,000 requests -> 1000)
    first_tier: bool = False  # tiered prices: take the dimension starting at 0


SERVICE_QUERIES: dict[str, ServiceQuery] = {
    "eks_cluster_usd_per_hour": ServiceQuery("AmazonEKS", (), "AmazonEKS-Hours:perCluster"),
    # The usage type extended-support hours are billed under in Cost and Usage Reports (not yet
    # checked against a Price List response; a refresh that matches nothing keeps the old row).
    "eks_cluster_extended_usd_per_hour": ServiceQuery("AmazonEKS", (), "AmazonEKS-Hours:extendedSupport"),
    "nat_gateway_usd_per_hour": ServiceQuery("AmazonEC2", (("productFamily", "NAT Gateway"),), "NatGateway-Hours"),
    "nat_gateway_usd_per_gb": ServiceQuery("AmazonEC2", (("productFamily", "NAT Gateway"),), "NatGateway-Bytes"),
    "public_ipv4_usd_per_hour": ServiceQuery("AmazonVPC", (), "PublicIPv4:InUseAddress"),
    "nlb_usd_per_hour": ServiceQuery("AWSELB", (("productFamily", "Load Balancer-Network"),), "LoadBalancerUsage"),
    "nlb_lcu_usd_per_hour": ServiceQuery("AWSELB", (("productFamily", "Load Balancer-Network"),), "LCUUsage"),
    "ebs_gp3_usd_per_gb_month": ServiceQuery("AmazonEC2", (("volumeApiName", "gp3"),), "EBS:VolumeUsage.gp3"),
    "s3_standard_usd_per_gb_month": ServiceQuery("AmazonS3", (("volumeType", "Standard"),), "TimedStorage-ByteHrs",
                                                 first_tier=True),
    "s3_put_usd_per_1000_requests": ServiceQuery("AmazonS3", (("group", "S3-API-Tier1"),), "Requests-Tier1", per_units=1000),
    "s3_get_usd_per_1000_requests": ServiceQuery("AmazonS3", (("group", "S3-API-Tier2"),), "Requests-Tier2", per_units=1000),
    "kms_key_usd_per_month": ServiceQuery("awskms", (), "KMS-Keys"),
    "kms_usd_per_10000_requests": ServiceQuery("awskms", (), "KMS-Requests", per_units=10000),
}


def _pages(client: Any, service_code: str, filters: list[dict[str, str]]) -> Iterator[dict]:
    """Every PriceList entry (parsed) over all pages, following NextToken."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ServiceCode": service_code, "Filters": filters, "FormatVersion": "aws_v1",
                                  "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.get_products(**kwargs)
        for raw in page.get("PriceList", []):
            yield json.loads(raw) if isinstance(raw, str) else raw
        token = page.get("NextToken")
        if not token:
            return


def _dimensions(item: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for term in (item.get("terms", {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            yield dim


def _usd(dim: Mapping[str, Any]) -> Decimal | None:
    try:
        value = Decimal(str(dim.get("pricePerUnit", {}).get("USD")))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def on_demand_price(item: Mapping[str, Any], first_tier: bool = False) -> Decimal | None:
    """The on-demand USD price of a PriceList entry (the first-tier dimension if tiered)."""
    dims = list(_dimensions(item))
    if first_tier:
        dims = [d for d in dims if str(d.get("beginRange", "0")) == "0"] or dims
    prices = [p for p in (_usd(d) for d in dims) if p is not None]
    return prices[0] if prices else None


def fetch_instance_prices(client: Any, region: str, wanted: Iterable[str]) -> dict[str, Decimal]:
    wanted = set(wanted)
    found: dict[str, Decimal] = {}
    for item in _pages(client, "AmazonEC2", ec2_filters(region)):
        itype = item.get("product", {}).get("attributes", {}).get("instanceType")
        if itype not in wanted:
            continue
        price = on_demand_price(item)
        if price is None or price <= 0:
            continue
        # Duplicates (license or SKU variants): keep the lowest non-zero on-demand rate.
        found[itype] = min(price, found.get(itype, price)).normalize()
    return found


def fetch_service_price(client: Any, region: str, query: ServiceQuery) -> Decimal | None:
    filters = [_tm("regionCode", region)] + [_tm(f, v) for f, v in query.filters]
    for item in _pages(client, query.service_code, filters):
        usage = str(item.get("product", {}).get("attributes", {}).get("usagetype", ""))
        if not usage.endswith(query.usagetype_suffix):
            continue
        price = on_demand_price(item, query.first_tier)
        if price is not None and price > 0:
            return (price * query.per_units).normalize()
    return None


@dataclass(frozen=True)
class RefreshResult:
    book: PriceBook
    changes: tuple[str, ...]


def refresh(
    client: Any,
    book: PriceBook,
    regions: Iterable[str],
    *,
    catalog: Catalog | None = None,
    today: str | None = None,
    services: bool = True,
) -> RefreshResult:
    """A new price book with the regions' rows replaced by Price List API figures."""
    catalog = catalog or load_catalog()
    today = today or _dt.date.today().isoformat()
    changes: list[str] = []
    gpu_types = set(catalog.instances)
    general_types = {t for rows in book.general_instances.values() for t in rows}
    instances = {r: dict(v) for r, v in book.instances.items()}
    general = {r: dict(v) for r, v in book.general_instances.items()}
    svc = {r: dict(v) for r, v in book.services.items()}
    unpriced = {r: dict(v) for r, v in book.unpriced.items()}
    for region in regions:
        found = fetch_instance_prices(client, region, gpu_types | general_types)
        for itype in sorted(gpu_types | general_types):
            target = instances if itype in gpu_types else general
            old = target.get(region, {}).get(itype)
            if itype in found:
                row = PriceRow(found[itype], "instance-hour", EC2_SOURCE, today, True)
                target.setdefault(region, {})[itype] = row
                unpriced.get(region, {}).pop(itype, None)
                if old is None or old.usd != row.usd or not old.confirmed:
                    changes.append(f"{region} {itype}: {old.usd if old else 'none'} -> {row.usd}")
            elif itype in gpu_types:
                if old is not None:
                    target[region].pop(itype)
                    changes.append(f"{region} {itype}: {old.usd} -> unpriced (not listed on-demand)")
                unpriced.setdefault(region, {})[itype] = f"no on-demand Linux price in the Price List API ({today})"
        if services:
            for key, query in SERVICE_QUERIES.items():
                price = fetch_service_price(client, region, query)
                old = svc.get(region, {}).get(key)
                if price is None:
                    changes.append(f"{region} {key}: not found in the Price List API; kept "
                                   + (f"{old.usd} (confirmed: {str(old.confirmed).lower()})" if old else "nothing"))
                    continue
                unit = old.unit if old else SERVICE_KEYS[key]
                row = PriceRow(price.normalize(), unit,
                               f"AWS Price List API (pricing.get_products {query.service_code}, {query.usagetype_suffix})",
                               today, True)
                svc.setdefault(region, {})[key] = row
                if old is None or old.usd != row.usd or not old.confirmed:
                    changes.append(f"{region} {key}: {old.usd if old else 'none'} -> {row.usd}")
    unpriced = {r: v for r, v in unpriced.items() if v}
    # Capacity-block rates are not in the Price List API (they are quoted per offering): kept.
    new = replace(book, instances=instances, general_instances=general, services=svc, unpriced=unpriced)
    return RefreshResult(new, tuple(changes))


# --- managed-API token prices (Amazon Bedrock) --------------------------------------------------
#
# The Price List API lists Bedrock under ServiceCode "AmazonBedrock"; each product names its
# model (`model`) and what is billed (`inferenceType`, else `usagetype`: input or output tokens,
# batch, cache, provisioned throughput...), with a price per unit ("1K tokens" and the like).
# These attribute names follow the Price List API's published Bedrock products but were not
# checked against a live response from this repository (no AWS access here); a row the API does
# not answer keeps its old figures and is reported. OpenAI and Anthropic publish no price API:
# their rows are updated by hand (docs/tco.md).

BEDROCK_SERVICE = "AmazonBedrock"
BEDROCK_SOURCE = "AWS Price List API (pricing.get_products AmazonBedrock, on-demand)"
# Bedrock products that are not the plain on-demand token price a TCO compares with.
_NOT_ON_DEMAND = ("batch", "cache", "provisioned", "flex", "priority", "latency", "long context", "custom")
_UNIT_TOKENS = {"1k tokens": Decimal(1000), "1m tokens": Decimal(1), "1 million tokens": Decimal(1),
                "tokens": Decimal(1_000_000), "token": Decimal(1_000_000)}


def usd_per_million_tokens(dim: Mapping[str, Any]) -> Decimal | None:
    """A price dimension's USD per 1M tokens, from its `unit` (None for a unit that is not tokens)."""
    price = _usd(dim)
    scale = _UNIT_TOKENS.get(str(dim.get("unit", "")).strip().lower())
    return None if price is None or scale is None else (price * scale).normalize()


def fetch_bedrock_prices(client: Any, region: str, models: Iterable[str]) -> dict[str, dict[str, Decimal]]:
    """Price List `model` -> {"input": $/1M, "output": $/1M} of the on-demand token prices found."""
    wanted = set(models)
    found: dict[str, dict[str, Decimal]] = {}
    for item in _pages(client, BEDROCK_SERVICE, [_tm("regionCode", region)]):
        attrs = item.get("product", {}).get("attributes", {})
        model = attrs.get("model")
        kind = str(attrs.get("inferenceType") or attrs.get("usagetype") or "").lower()
        if model not in wanted or any(word in kind for word in _NOT_ON_DEMAND):
            continue
        side = "input" if "input" in kind else "output" if "output" in kind else None
        prices = [p for p in (usd_per_million_tokens(d) for d in _dimensions(item)) if p is not None and p > 0]
        if side and prices:
            found.setdefault(model, {})[side] = min(prices + [found.get(model, {}).get(side, prices[0])])
    return found


def refresh_api_models(client: Any, book: PriceBook, *, today: str | None = None) -> RefreshResult:
    """A new price book with every Bedrock row (a region and a `price_list_model`) reread."""
    today = today or _dt.date.today().isoformat()
    rows = dict(book.api_models)
    changes: list[str] = []
    by_region: dict[str, list[str]] = {}
    for key, row in sorted(rows.items()):
        if row.region and row.price_list_model:
            by_region.setdefault(row.region, []).append(key)
        else:
            changes.append(f"{key}: no price API ({row.provider}); kept {row.date}, update it by hand (docs/tco.md)")
    for region, keys in sorted(by_region.items()):
        found = fetch_bedrock_prices(client, region, {rows[k].price_list_model for k in keys})
        for key in keys:
            old = rows[key]
            got = found.get(old.price_list_model, {})
            if set(got) != {"input", "output"}:
                changes.append(f"{key}: {old.price_list_model!r} in {region} not found in the Price List API "
                               f"(input and output); kept {old.date}")
                continue
            rows[key] = replace(old, usd_per_million_input_tokens=got["input"], usd_per_million_output_tokens=got["output"],
                                source=BEDROCK_SOURCE, date=today, confirmed=True, basis="")
            changes.append(f"{key}: {old.usd_per_million_input_tokens}/{old.usd_per_million_output_tokens} -> "
                           f"{got['input']}/{got['output']} per 1M input/output tokens")
    return RefreshResult(replace(book, api_models=rows), tuple(changes))
