"""Network: the VPC, private and public subnets per AZ, a NAT gateway per AZ, an S3 gateway
endpoint (so weight downloads never cross a NAT gateway) and the EFA security group.

Subnets are carved from the VPC CIDR by `subnet_plan`: the VPC is split into eighths; AZ *i*
gets private block *i* (pods take VPC IPs with the VPC CNI, so private subnets are large) and
public subnet *i* is the *i*-th eighth of the last block (NAT gateways and load balancers only).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.program.components.common import merge_tags
from infra.core.errors import UserError

MAX_AZS = 6  # private blocks 0-5; block 7 holds the public subnets


@dataclass(frozen=True)
class SubnetCidrs:
    az: str
    private: str
    public: str


def subnet_plan(vpc_cidr: str, azs: Sequence[str]) -> list[SubnetCidrs]:
    """Private and public CIDRs per AZ, deterministic and non-overlapping."""
    if not 1 <= len(azs) <= MAX_AZS:
        raise UserError(f"llm-fleet:fleet.azs: {len(azs)} is not allowed; the network supports 1 to {MAX_AZS} AZs")
    vpc = ipaddress.ip_network(vpc_cidr)
    eighths = list(vpc.subnets(prefixlen_diff=3))
    publics = list(eighths[-1].subnets(prefixlen_diff=3))
    return [SubnetCidrs(az, str(eighths[i]), str(publics[i])) for i, az in enumerate(azs)]


def select_azs(
    region: str,
    count: int,
    instance_type: str,
    named: Sequence[str] | None = None,
) -> list[str]:
    """The AZs to run in: the named ones, else the first `count` (sorted) that offer the type.

    Uses two invokes (AZs available to the account; where the instance type is offered). An
    offering is not a capacity promise: preflight checks capacity and quota separately.
    """
    zones = aws.get_availability_zones(
        state="available",
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
    )
    available = sorted(zones.names)
    offerings = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[{"name": "instance-type", "values": [instance_type]}],
    )
    offered = sorted(set(offerings.locations) & set(available))
    if named:
        missing = [az for az in named if az not in available]
        if missing:
            raise UserError(
                f"llm-fleet:network.availability_zones: {missing!r} is not allowed; "
                f"AZs available in {region}: {', '.join(available)}"
            )
        not_offered = [az for az in named if az not in offered]
        if not_offered:
            raise UserError(
                f"llm-fleet:network.availability_zones: {not_offered!r} is not allowed; {instance_type} is offered "
                f"in: {', '.join(offered) or 'no AZ'} of {region}"
            )
        return list(named)
    if len(offered) < count:
        raise UserError(
            f"llm-fleet:fleet.azs: {count} is not allowed; {instance_type} is offered in only "
            f"{len(offered)} AZs of {region} ({', '.join(offered) or 'none'})"
        )
    return offered[:count]


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str  # "llm-fleet-prod": the Name tag prefix
    region: str
    vpc_cidr: str
    azs: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    """VPC, subnets, NAT per AZ, S3 gateway endpoint, EFA security group."""

    vpc: aws.ec2.Vpc
    private_subnets: dict[str, aws.ec2.Subnet]
    public_subnets: dict[str, aws.ec2.Subnet]
    nat_gateways: dict[str, aws.ec2.NatGateway]
    private_route_tables: dict[str, aws.ec2.RouteTable]
    s3_endpoint: aws.ec2.VpcEndpoint
    efa_security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = args.name_prefix
        tags = args.tags

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=merge_tags(tags, Name=f"{p}-vpc"),
            opts=child,
        )
        # Lock down the VPC's default security group (no rules): nothing should use it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            tags=merge_tags(tags, Name=f"{p}-default-deny-all"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=merge_tags(tags, Name=f"{p}-igw"), opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=self.vpc.id, tags=merge_tags(tags, Name=f"{p}-public"), opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default-route",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        self.private_subnets, self.public_subnets = {}, {}
        self.nat_gateways, self.private_route_tables = {}, {}
        for cidrs in subnet_plan(args.vpc_cidr, args.azs):
            az = cidrs.az
            public = aws.ec2.Subnet(
                f"{name}-public-{az}",
                vpc_id=self.vpc.id,
                availability_zone=az,
                cidr_block=cidrs.public,
                map_public_ip_on_launch=False,
                tags=merge_tags(tags, Name=f"{p}-public-{az}", **{"kubernetes.io/role/elb": "1"}),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{az}-rta", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{az}", domain="vpc", tags=merge_tags(tags, Name=f"{p}-nat-{az}"), opts=child
            )
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{az}",
                allocation_id=eip.id,
                subnet_id=public.id,
                connectivity_type="public",
                tags=merge_tags(tags, Name=f"{p}-nat-{az}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{az}",
                vpc_id=self.vpc.id,
                availability_zone=az,
                cidr_block=cidrs.private,
                map_public_ip_on_launch=False,
                tags=merge_tags(tags, Name=f"{p}-private-{az}", **{"kubernetes.io/role/internal-elb": "1"}),
                opts=child,
            )
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{az}", vpc_id=self.vpc.id, tags=merge_tags(tags, Name=f"{p}-private-{az}"),
                opts=child,
            )
            aws.ec2.Route(
                f"{name}-private-default-route-{az}",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{az}-rta", subnet_id=private.id, route_table_id=rt.id, opts=child
            )
            self.public_subnets[az], self.private_subnets[az] = public, private
            self.nat_gateways[az], self.private_route_tables[az] = nat, rt

        # Weights come from S3: a gateway endpoint on every private route table keeps that
        # traffic off the NAT gateways (no per-GB processing charge, no internet path).
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in self.private_route_tables.values()],
            tags=merge_tags(tags, Name=f"{p}-s3"),
            opts=child,
        )

        # EFA: every GPU node's EFA interfaces carry this group, which admits all traffic from
        # and to its own members (and nothing else; the cluster security group does the rest).
        self.efa_security_group = aws.ec2.SecurityGroup(
            f"{name}-efa-sg",
            vpc_id=self.vpc.id,
            description="EFA: all traffic to and from members of this group only",
            tags=merge_tags(tags, Name=f"{p}-efa"),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-efa-ingress-self",
            security_group_id=self.efa_security_group.id,
            referenced_security_group_id=self.efa_security_group.id,
            ip_protocol="-1",
            description="EFA: all traffic from members of this group",
            tags=merge_tags(tags, Name=f"{p}-efa-in"),
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-efa-egress-self",
            security_group_id=self.efa_security_group.id,
            referenced_security_group_id=self.efa_security_group.id,
            ip_protocol="-1",
            description="EFA: all traffic to members of this group",
            tags=merge_tags(tags, Name=f"{p}-efa-out"),
            opts=child,
        )

        self.register_outputs(
            {
                "vpc_id": self.vpc.id,
                "private_subnet_ids": {az: s.id for az, s in self.private_subnets.items()},
                "public_subnet_ids": {az: s.id for az, s in self.public_subnets.items()},
                "nat_gateway_ids": {az: n.id for az, n in self.nat_gateways.items()},
                "s3_endpoint_id": self.s3_endpoint.id,
                "efa_security_group_id": self.efa_security_group.id,
            }
        )
