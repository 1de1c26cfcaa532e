"""Fixtures: a real S3-compatible server (moto's server mode) on loopback, fake models.

The server is started once per session on 127.0.0.1 with a free port and stopped at the end;
each test gets its own bucket, so tests do not see each other's objects.
"""
from __future__ import annotations

import shutil
import uuid

import pytest

import infra.cli
from infra.core.weights_layout import BUCKET_ENV
from tests.moto_support import moto_server
from weights_support import MODEL, REV, UPLOAD_PART_SIZE_BYTES, Interrupted, RequestLog, write_fake_model


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint):
    from infra.ops.weights.s3 import make_client

    return make_client(s3_endpoint, "us-east-1", max_connections=16)


@pytest.fixture
def bucket(s3) -> str:
    name = f"weights-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def model_template(s3_endpoint, tmp_path_factory):
    """The fake model written and uploaded once per session (uploading costs ~1 s)."""
    from infra.ops.weights.s3 import make_client
    from infra.ops.weights.upload import upload_model

    src = tmp_path_factory.mktemp("template") / "src"
    contents = write_fake_model(src)
    client = make_client(s3_endpoint, "us-east-1", max_connections=8)
    name = f"template-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    upload_model(client, name, str(src), MODEL, REV, concurrency=4,
                 part_size_bytes=UPLOAD_PART_SIZE_BYTES)
    return src, contents, name


@pytest.fixture
def fake_model(tmp_path, model_template):
    """A private copy of the fake model's files: (directory, {path: bytes})."""
    src = tmp_path / "src"
    shutil.copytree(model_template[0], src)
    return src, dict(model_template[1])


@pytest.fixture
def uploaded(s3, bucket, model_template) -> dict[str, bytes]:
    """The fake model as `upload` leaves it, in this test's own bucket (server-side copies of
    the session's upload, so each test may corrupt its objects freely)."""
    _, contents, template = model_template
    listing = s3.list_objects_v2(Bucket=template, Prefix=f"models/{MODEL}/{REV}/")
    for obj in listing["Contents"]:
        # CRC32 makes the server compute a full-object checksum for the copy; without it moto
        # carries the multipart source's composite checksum over and botocore rejects the GET.
        s3.copy_object(Bucket=bucket, Key=obj["Key"], ChecksumAlgorithm="CRC32",
                       CopySource={"Bucket": template, "Key": obj["Key"]})
    return dict(contents)


@pytest.fixture
def request_log(s3) -> RequestLog:
    log = RequestLog()

    def before_send(request, event_name, **kwargs):
        op = event_name.rsplit(".", 1)[-1]
        key = request.url.split("?", 1)[0].split("/", 4)[-1]  # http://host/bucket/<key>
        with log.lock:
            if op == "GetObject" and log.fail_after_gets is not None \
                    and len(log.gets()) >= log.fail_after_gets:
                raise Interrupted(f"simulated crash before GET {key}")
            rng = request.headers.get("Range")
            log.requests.append((op, key, rng.decode() if isinstance(rng, bytes) else rng))
        return None

    s3.meta.events.register("before-send.s3", before_send)
    return log


@pytest.fixture
def cli(monkeypatch, capsys, s3_endpoint):
    """Run `python -m infra weights ARGV...` in-process against the moto server; returns
    (exit code, stdout, stderr) and fails on any traceback."""
    # Only this command module: the others are built in parallel and may not import yet.
    monkeypatch.setattr(infra.cli, "COMMAND_MODULES", ("infra.cli.weights",))
    monkeypatch.delenv(BUCKET_ENV, raising=False)

    def run(*argv: str, endpoint: bool = True):
        args = ["weights", *argv]
        if endpoint and argv[0] != "wait":
            args += ["--endpoint-url", s3_endpoint, "--region", "us-east-1"]
        code = infra.cli.main(args)
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err
    return run
