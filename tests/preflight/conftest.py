"""moto in server mode on loopback, and a region with the weights bucket, key and manifest."""
from __future__ import annotations


import boto3
import pytest

from tests.moto_support import moto_server

from preflight_support import BUCKET, MANIFEST, REGION


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
    yield {"s3": s3, "kms": kms, "key_id": key_id}
    kms.delete_alias(AliasName=f"alias/{BUCKET}")
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)
