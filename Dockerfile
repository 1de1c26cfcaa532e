# llm-fleet weights hydrator: `python -m infra.cli.weights hydrate|wait|verify|upload ...`.
# Built from this repository's root: docker build -t <registry>/llm-fleet-hydrator:<version> .
# The image reference is stack config (pinned tag or digest; infra/program/serving/hydrator.py refuses
# `latest`). Pin the base by digest too when building in CI:
#   FROM python:3.11.13-slim-bookworm@sha256:<digest from `docker buildx imagetools inspect`>
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not re-install them. Only what the weights tier
# imports: boto3 and pydantic (not pulumi, not PyYAML).
COPY infra/ops/weights/requirements-hydrator.txt /tmp/requirements-hydrator.txt
RUN pip install -r /tmp/requirements-hydrator.txt && rm /tmp/requirements-hydrator.txt

# Only the modules the weights command imports; the rest of infra/ (sizing, cost, the program)
# would need pulumi and is not shipped to GPU nodes.
COPY infra/__init__.py /app/infra/
COPY infra/core/__init__.py infra/core/errors.py infra/core/files.py infra/core/labels.py infra/core/patterns.py infra/core/weights_layout.py /app/infra/core/
COPY infra/cli/__init__.py infra/cli/argtypes.py infra/cli/output.py infra/cli/weights.py /app/infra/cli/
COPY infra/ops/__init__.py infra/ops/aws.py /app/infra/ops/
COPY infra/ops/weights/ /app/infra/ops/weights/
# Byte-code compiled at build time: the containers run with a read-only root filesystem.
RUN python -m compileall -q /app/infra

# A non-root default. The DaemonSet's hydrate container overrides it with runAsUser 0 and
# drops every capability: it writes a hostPath directory, and hostPath ignores fsGroup and is
# created root-owned by kubelet. The `hold` and vLLM `wait-for-weights` containers run as
# this uid, read-only.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hydrator
USER 10001

# `sleep` and `test` (coreutils, in the slim image) serve the DaemonSet's hold container
# and its probes.
ENTRYPOINT ["python", "-m", "infra.cli.weights"]
CMD ["--help"]
