"""moto in server mode on loopback, and a region with the weights bucket, key and manifest."""
from __future__ import annotations


import boto3
import pytest

from tests.moto_support import moto_server

from preflight_support import BUCKET, MANIFEST, REGION, STACK

MANIFEST_DOC = ('{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", '
                '"config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, '
                '"digest": "sha256:' + "0" * 64 + '"}, "layers": []}')


def stack_images():
    from infra.core.config import load_stack_config
    from infra.core.images import stack_images as images
    from infra.core.paths import REPO_ROOT

    return images(load_stack_config(STACK, REPO_ROOT))


def fill_ecr(ecr, images) -> None:
    """What the mirror step leaves: every repository, with the image's tag where one is recorded."""
    for img in images:
        ecr.create_repository(repositoryName=img.ecr_repository)
        if img.tag:
            ecr.put_image(repositoryName=img.ecr_repository, imageManifest=MANIFEST_DOC, imageTag=img.tag,
                          **({"imageDigest": img.digest} if img.digest else {}))


@pytest.fixture(scope="session")
def moto_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def world(moto_endpoint):
    """The bucket (us-west-2), its KMS alias and the revision's manifest; removed afterwards."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key=MANIFEST, Body=b"{}")
    key_id = kms.create_key(Description="weights")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{BUCKET}", TargetKeyId=key_id)
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=moto_endpoint)
    fill_ecr(ecr, stack_images())
    yield {"s3": s3, "kms": kms, "key_id": key_id, "ecr": ecr}
    for repo in ecr.describe_repositories()["repositories"]:
        ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)
    kms.delete_alias(AliasName=f"alias/{BUCKET}")
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)
