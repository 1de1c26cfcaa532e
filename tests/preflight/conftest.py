"""moto in server mode on loopback, and a region with the weights bucket, key and manifest."""
from __future__ import annotations

import logging
import os

import boto3
import pytest

from preflight_support import BUCKET, MANIFEST, REGION


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    dummy = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {key: os.environ.get(key) for key in dummy}
    os.environ.update(dummy)  # never real credentials: everything goes to moto on loopback
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
