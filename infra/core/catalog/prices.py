"""The price book: on-demand instance prices and the fixed-infrastructure service prices.

`prices.yaml` beside this module is the one place every price lives, each row with its source,
the date it was recorded and whether it was confirmed against a source (`confirmed: false`
rows are estimates: see `basis`). Four sections, each keyed by region:

* `instances` - GPU instance types of the catalog, on-demand;
* `general_instances` - non-GPU types a system node group may use;
* `services` - EKS, NAT gateway, public IPv4, NLB, EBS gp3, S3 and KMS unit prices;
* `capacity_blocks` - EC2 Capacity Blocks for ML, per instance-hour, where a rate is published;

plus `global_services` (services billed per account, whatever the region: Route 53's hosted
zones, queries and health checks; keyed by price, not by region), `unpriced` (region ->
instance type -> why no on-demand price exists), and the managed-API token prices and
reservation discounts the TCO compares against (`api_models`, `reservations`, whose rows
`infra.core.catalog.api_prices` defines). A capacity type is
priced by `capacity_price`: on-demand and reservation (an On-Demand Capacity Reservation bills at
the on-demand rate, used or not) from `instances`, capacity-block from `capacity_blocks`.

The PriceBook is the only reader of `prices.yaml` (sizing, the cost model, the policies and the
program all ask it). Pure: reads YAML, builds Decimals. `python -m infra prices refresh`
(infra/core/catalog/refresh.py over a client from infra/ops/aws.py) rewrites the file through
`write_price_document`, atomically.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

import yaml

from infra.core.catalog.api_prices import (
    API_SECTIONS,
    ApiPrice,
    Reservation,
    parse_api_models,
    parse_reservations,
    render_api_sections,
)
from infra.core.errors import InputError
from infra.core.files import atomic_write, read_yaml_file

PRICES_PATH = Path(__file__).resolve().parent / "prices.yaml"

# The regions the catalog must cover (issue #5); more may be added.
REQUIRED_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1")

# Service price keys: unit in the name, one line each on what is billed.
SERVICE_KEYS: dict[str, str] = {
    "eks_cluster_usd_per_hour": "EKS control plane, per cluster-hour (standard support)",
    "eks_cluster_extended_usd_per_hour": "EKS control plane, per cluster-hour (a version in extended support)",
    "nat_gateway_usd_per_hour": "NAT gateway, per gateway-hour",
    "nat_gateway_usd_per_gb": "NAT gateway data processed, per GB",
    "public_ipv4_usd_per_hour": "public IPv4 address (Elastic IP, NLB), per address-hour",
    "nlb_usd_per_hour": "Network Load Balancer, per load-balancer-hour",
    "nlb_lcu_usd_per_hour": "Network Load Balancer capacity unit (NLCU), per NLCU-hour",
    "ebs_gp3_usd_per_gb_month": "EBS gp3 storage, per GB-month",
    "s3_standard_usd_per_gb_month": "S3 Standard storage (first 50 TB tier), per GB-month",
    "s3_put_usd_per_1000_requests": "S3 Standard PUT/COPY/POST/LIST, per 1,000 requests",
    "s3_get_usd_per_1000_requests": "S3 Standard GET and other reads, per 1,000 requests",
    "kms_key_usd_per_month": "KMS customer managed key, per key-month",
    "kms_usd_per_10000_requests": "KMS API requests, per 10,000 requests",
}

# Global service price keys (Route 53 has no region): unit in the name, one line each on what is billed.
GLOBAL_SERVICE_KEYS: dict[str, str] = {
    "route53_hosted_zone_usd_per_month": "Route 53 hosted zone, per zone-month (the first 25 zones of an account)",
    "route53_standard_queries_usd_per_million": "Route 53 standard queries (simple, weighted, failover), per million "
                                                "(the first billion a month)",
    "route53_latency_queries_usd_per_million": "Route 53 latency-based routing queries, per million (the first "
                                               "billion a month)",
    "route53_geo_queries_usd_per_million": "Route 53 geolocation and geoproximity queries, per million (the first "
                                           "billion a month)",
    "route53_health_check_usd_per_month": "Route 53 health check of an AWS endpoint, per check-month",
    "route53_health_check_option_usd_per_month": "Route 53 health check option on an AWS endpoint (HTTPS, string "
                                                 "matching, fast interval, latency measurement), per option-month",
}

_SECTIONS = ("instances", "general_instances", "services", "capacity_blocks")
# Sections of instance rows (amount key usd_per_hour), as opposed to service rows.
_INSTANCE_SECTIONS = ("instances", "general_instances", "capacity_blocks")


@dataclass(frozen=True)
class PriceRow:
    """One price: an amount in USD per `unit`, where it came from and how sure we are."""

    usd: Decimal
    unit: str
    source: str
    date: str
    confirmed: bool = True
    basis: str = ""  # how an unconfirmed row was derived

    def describe(self) -> str:
        flag = "" if self.confirmed else " (unconfirmed)"
        return f"${self.usd} per {self.unit}, {self.source}, {self.date}{flag}"


@dataclass(frozen=True)
class PriceBook:
    instances: Mapping[str, Mapping[str, PriceRow]] = field(default_factory=dict)
    general_instances: Mapping[str, Mapping[str, PriceRow]] = field(default_factory=dict)
    services: Mapping[str, Mapping[str, PriceRow]] = field(default_factory=dict)
    capacity_blocks: Mapping[str, Mapping[str, PriceRow]] = field(default_factory=dict)
    unpriced: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    global_services: Mapping[str, PriceRow] = field(default_factory=dict)
    api_models: Mapping[str, ApiPrice] = field(default_factory=dict)  # managed-API token prices
    reservations: Mapping[str, Reservation] = field(default_factory=dict)  # committed-capacity discounts

    @property
    def regions(self) -> tuple[str, ...]:
        names: set[str] = set()
        for section in _SECTIONS:
            names.update(getattr(self, section))
        return tuple(sorted(names))

    def instance(self, region: str, instance_type: str) -> PriceRow | None:
        """On-demand $/hour of an instance type (GPU or general) in a region, if known."""
        row = self.instances.get(region, {}).get(instance_type)
        if row is None:
            row = self.general_instances.get(region, {}).get(instance_type)
        return row

    def capacity_price(self, region: str, instance_type: str, capacity_type: str) -> PriceRow | None:
        """$/instance-hour of a GPU type bought as `capacity_type` (fleet.capacity_type), if known."""
        if capacity_type == "capacity-block":
            return self.capacity_blocks.get(region, {}).get(instance_type)
        if capacity_type in ("on-demand", "reservation"):
            return self.instance(region, instance_type)
        raise KeyError(f"unknown capacity type {capacity_type!r}")

    def why_unpriced(self, region: str, instance_type: str) -> str:
        return self.unpriced.get(region, {}).get(instance_type, "")

    def service(self, region: str, key: str) -> PriceRow | None:
        if key not in SERVICE_KEYS:
            raise KeyError(f"unknown service price key {key!r}; known: {', '.join(SERVICE_KEYS)}")
        return self.services.get(region, {}).get(key)

    def require_service(self, region: str, key: str) -> PriceRow:
        row = self.service(region, key)
        if row is None:
            known = ", ".join(sorted(r for r, rows in self.services.items() if key in rows))
            raise InputError(
                "region",
                region,
                f"regions with a {key} price: {known}",
                hint="add the row to infra/core/catalog/prices.yaml or run `python -m infra prices refresh --region REGION`",
            )
        return row

    def require_global_service(self, key: str) -> PriceRow:
        """A global service's price (Route 53); InputError naming the key when the book has none."""
        if key not in GLOBAL_SERVICE_KEYS:
            raise KeyError(f"unknown global service price key {key!r}; known: {', '.join(GLOBAL_SERVICE_KEYS)}")
        row = self.global_services.get(key)
        if row is None:
            raise InputError("global_services", key, "a row in infra/core/catalog/prices.yaml for every global service key",
                             hint="add the row to the global_services section")
        return row

    def with_rows(self, section: str, region: str, rows: Mapping[str, PriceRow]) -> "PriceBook":
        """A copy with `rows` merged into `section[region]` (used by `prices refresh`)."""
        if section not in _SECTIONS:
            raise KeyError(section)
        current = {r: dict(v) for r, v in getattr(self, section).items()}
        current.setdefault(region, {}).update(rows)
        return replace(self, **{section: current})

    def unconfirmed(self) -> list[tuple[str, str, str]]:
        """(section, region, key) of every row not confirmed against a source."""
        out = []
        for section in _SECTIONS:
            for region, rows in sorted(getattr(self, section).items()):
                out.extend((section, region, k) for k, row in sorted(rows.items()) if not row.confirmed)
        out.extend(("global_services", "", k) for k, row in sorted(self.global_services.items()) if not row.confirmed)
        for section in API_SECTIONS:
            out.extend((section, "", k) for k, row in sorted(getattr(self, section).items()) if not row.confirmed)
        return out


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InputError(where, value, "a price in USD as a decimal string, e.g. \"55.04\"")
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise InputError(where, value, "a price in USD as a decimal string, e.g. \"55.04\"") from None
    if not out.is_finite() or out < 0:
        raise InputError(where, value, "a finite, non-negative price in USD")
    return out


def _row(raw: Any, where: str, unit: str, amount_key: str) -> PriceRow:
    if not isinstance(raw, Mapping):
        raise InputError(where, raw, f"a mapping with {amount_key}, source and date")
    missing = [k for k in (amount_key, "source", "date") if k not in raw]
    if missing:
        raise InputError(f"{where}.{missing[0]}", None, "every price row names its amount, source and date")
    confirmed = raw.get("confirmed", True)
    if not isinstance(confirmed, bool):
        raise InputError(f"{where}.confirmed", confirmed, "true or false")
    return PriceRow(
        usd=_decimal(raw[amount_key], f"{where}.{amount_key}"),
        unit=str(raw.get("unit") or unit),
        source=str(raw["source"]),
        date=str(raw["date"]),
        confirmed=confirmed,
        basis=str(raw.get("basis", "")),
    )


def parse_price_document(doc: Any, where: str = "prices.yaml") -> PriceBook:
    """Validate a prices document (the YAML's data) into a PriceBook; errors name the row."""
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise InputError(where, type(doc).__name__, f"a mapping with {', '.join(_SECTIONS)}")
    unknown = set(doc) - set(_SECTIONS) - {"unpriced", "global_services", *API_SECTIONS}
    if unknown:
        raise InputError(f"{where}.{sorted(unknown)[0]}", "(section)",
                         f"sections: {', '.join(_SECTIONS)}, global_services, unpriced, {', '.join(API_SECTIONS)}")
    sections: dict[str, dict[str, dict[str, PriceRow]]] = {}
    for section in _SECTIONS:
        by_region: dict[str, dict[str, PriceRow]] = {}
        for region, rows in (doc.get(section) or {}).items():
            if not isinstance(rows, Mapping):
                raise InputError(f"{where}.{section}.{region}", rows, "a mapping of rows")
            out: dict[str, PriceRow] = {}
            for key, raw in rows.items():
                path = f"{where}.{section}.{region}.{key}"
                if section not in _INSTANCE_SECTIONS:
                    if key not in SERVICE_KEYS:
                        raise InputError(path, key, f"service keys: {', '.join(SERVICE_KEYS)}")
                    out[key] = _row(raw, path, SERVICE_KEYS[key], "usd")
                else:
                    out[key] = _row(raw, path, "instance-hour", "usd_per_hour")
            by_region[str(region)] = out
        sections[section] = by_region
    unpriced = {
        str(region): {str(k): str(v) for k, v in (rows or {}).items()}
        for region, rows in (doc.get("unpriced") or {}).items()
    }
    global_rows = doc.get("global_services") or {}
    if not isinstance(global_rows, Mapping):
        raise InputError(f"{where}.global_services", global_rows, "a mapping of rows")
    global_services = {}
    for key, raw in global_rows.items():
        path = f"{where}.global_services.{key}"
        if key not in GLOBAL_SERVICE_KEYS:
            raise InputError(path, key, f"global service keys: {', '.join(GLOBAL_SERVICE_KEYS)}")
        global_services[str(key)] = _row(raw, path, GLOBAL_SERVICE_KEYS[key], "usd")
    return PriceBook(unpriced=unpriced, global_services=global_services,
                     api_models=parse_api_models(doc.get("api_models"), f"{where}.api_models"),
                     reservations=parse_reservations(doc.get("reservations"), f"{where}.reservations"), **sections)


def read_price_book(path: Path | str) -> PriceBook:
    return parse_price_document(read_yaml_file(path, "prices"), Path(path).name)


def load_price_book(path: Path | str | None = None) -> PriceBook:
    """The price book from `path`, or the packaged `prices.yaml` (read once)."""
    if path is None:
        return _default_price_book()
    return read_price_book(path)


@functools.lru_cache(maxsize=1)
def _default_price_book() -> PriceBook:
    return read_price_book(PRICES_PATH)


# --- writing ------------------------------------------------------------------------------

_HEADER = """\
# Prices in USD, as strings (read into Decimal). Every row names its source, the date it was
# recorded and whether it was confirmed against that source; `confirmed: false` rows are
# estimates (see `basis`) until `python -m infra prices refresh --region R` replaces them with
# AWS Price List API figures. Written by infra/core/catalog/prices.py (render_price_document): keep
# the layout so a refresh produces a reviewable diff.
#
# instances:         on-demand Linux, shared tenancy, $/instance-hour, GPU types of the catalog
# general_instances: the same for non-GPU types a system node group may use
# services:          fixed infrastructure, unit in the key name
# capacity_blocks:   EC2 Capacity Blocks for ML, $/instance-hour (reservations bill at on-demand)
# global_services:   services with no region (Route 53), unit in the key name
# unpriced:          types with no on-demand price in a region, and why
# api_models:        managed APIs, USD per 1M input / output tokens, on-demand (`prices refresh
#                    --api-models` rereads Bedrock rows; OpenAI and Anthropic by hand: docs/tco.md)
# reservations:      Savings Plans, percent off the on-demand node-hour (the TCO's reservation)
"""


def _q(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def _row_text(row: PriceRow, amount_key: str, with_unit: bool) -> str:
    parts = [f"{amount_key}: {_q(_plain(row.usd))}"]
    if with_unit:
        parts.append(f"unit: {_q(row.unit)}")
    parts += [f"source: {_q(row.source)}", f"date: {_q(row.date)}", f"confirmed: {'true' if row.confirmed else 'false'}"]
    if row.basis:
        parts.append(f"basis: {_q(row.basis)}")
    return "{" + ", ".join(parts) + "}"


def _plain(d: Decimal) -> str:
    """Decimal as a plain string without exponent, trailing zeros kept as written."""
    text = format(d, "f")
    return text


def _region_order(regions: list[str]) -> list[str]:
    first = [r for r in REQUIRED_REGIONS if r in regions]
    return first + sorted(r for r in regions if r not in first)


def render_price_document(book: PriceBook) -> str:
    """The YAML text of a price book, deterministic (regions in issue order, keys sorted)."""
    lines = [_HEADER.rstrip("\n")]
    for section in _SECTIONS:
        data = getattr(book, section)
        lines.append(f"{section}:")
        if not data:
            lines[-1] += " {}"
            continue
        for region in _region_order(list(data)):
            rows = data[region]
            lines.append(f"  {region}:")
            keys = list(SERVICE_KEYS) if section == "services" else sorted(rows)
            for key in keys:
                if key in rows:
                    service = section not in _INSTANCE_SECTIONS
                    amount = "usd" if service else "usd_per_hour"
                    lines.append(f"    {key}: {_row_text(rows[key], amount, service)}")
    lines.append("global_services:" + ("" if book.global_services else " {}"))
    for key in GLOBAL_SERVICE_KEYS:
        if key in book.global_services:
            lines.append(f"  {key}: {_row_text(book.global_services[key], 'usd', True)}")
    lines.append("unpriced:" + ("" if book.unpriced else " {}"))
    for region in _region_order(list(book.unpriced)):
        lines.append(f"  {region}:")
        for key, why in sorted(book.unpriced[region].items()):
            lines.append(f"    {key}: {_q(why)}")
    lines += render_api_sections(book.api_models, book.reservations)
    return "\n".join(lines) + "\n"


def write_price_document(path: Path | str, book: PriceBook) -> None:
    """Write atomically (infra.core.files.atomic_write). The text is re-parsed first, so a file
    that would not load never replaces a good one."""
    target = Path(path)
    text = render_price_document(book)
    parse_price_document(yaml.safe_load(text), target.name)  # round-trip check
    atomic_write(target, text)
    if target.resolve() == PRICES_PATH:
        _default_price_book.cache_clear()
