"""Regular expressions for names the project validates, each written once.

Used as pydantic `pattern=` constraints and through `matches()`, which requires the whole text
to match: Python's `$` also matches before a trailing newline, `re.fullmatch` does not.
"""
from __future__ import annotations

import re

REGION = r"^[a-z]{2}(-[a-z]+)+-\d$"
AZ = r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$"
# Pulumi stack names: letters, digits, '-', '_', '.'; starting with a letter or digit.
STACK = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
HOSTNAME = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
HTTPS_URL = r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$"
HTTP_URL = r"^https?://[^\s]+$"
ACM_ARN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]{1,128}$"
IAM_PRINCIPAL = r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}$"
INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
IMAGE_BY_DIGEST = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?/[a-z0-9._/-]+(:[A-Za-z0-9._-]{1,128})?@sha256:[0-9a-f]{64}$"
REVISION = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
CAPACITY_RESERVATION = r"^cr-[0-9a-f]{8,17}$"
RESOURCE_GROUP_ARN = r"^arn:aws[a-z-]*:resource-groups:[a-z0-9-]+:\d{12}:group/[A-Za-z0-9_.-]{1,300}$"
SNS_TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
PLACEMENT_GROUP_NAME = r"^[A-Za-z0-9_.:+=@-]{1,255}$"
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
ROUTE53_ZONE_ID = r"^Z[A-Z0-9]{1,31}$"
# An Elastic Load Balancing DNS name (what a free Route 53 alias query targets), e.g.
# `abc-123.elb.us-east-1.amazonaws.com` (NLB), `name-1.us-east-1.elb.amazonaws.com` (ALB, classic).
ELB_DNS_NAME = r"^(dualstack\.)?[A-Za-z0-9.-]+\.elb(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?\.?$"
KUBERNETES_VERSION = r"^1\.(2[89]|3\d)$"
AMI_RELEASE = r"^\d+\.\d+\.\d+-\d{8}$"
ABSOLUTE_PATH = r"^/[A-Za-z0-9._/-]*$"
S3_PREFIX = r"^[A-Za-z0-9._/-]{0,200}$"
# Weights: a model is 'name' or 'org/name', a revision one such segment; digests and UTC times.
_WEIGHTS_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
MODEL_NAME = rf"^{_WEIGHTS_SEGMENT}(/{_WEIGHTS_SEGMENT})?$"
SHA256_HEX = r"^[0-9a-f]{64}$"
UTC_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
# A path naming one of this process's open descriptors (what /dev/stdout links to); group `fd`.
OWN_DESCRIPTOR_PATH = r"^/(proc/(self|thread-self)/fd|dev/fd)/(?P<fd>\d+)$"
SECRETS_MANAGER_ARN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$"
# AWS CodeBuild's curated images are named aws/codebuild/<image>:<major.minor>.
CODEBUILD_CURATED_IMAGE = r"^aws/codebuild/[a-z0-9._-]+:\d+\.\d+$"
SEMVER = r"^\d+\.\d+\.\d+$"

# Found inside longer text (resource names, URNs): an AZ name, or a zone id like use1-az1.
AZ_IN_TEXT = re.compile(
    r"\b((?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-|iso-|isob-)?"
    r"(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-\d+[a-z])\b"
)
AZ_ID_IN_TEXT = re.compile(r"\b([a-z]{2,4}\d-az\d+)\b")


def matches(pattern: str, text: object) -> bool:
    """True when the whole of `text` (a str) matches `pattern`."""
    return isinstance(text, str) and re.fullmatch(pattern, text) is not None
