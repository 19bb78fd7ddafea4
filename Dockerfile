# syntax=docker/dockerfile:1.7
# Two images from one file, both installing their Python dependencies with
# requirements.lock as the constraints file, so every package in them is at
# the exact version the tests ran with and matches one of the lock's SHA-256
# hashes (the pinned pip from requirements-bootstrap.lock, itself installed
# with --require-hashes, checks constraint hashes; tests/unit/test_dockerfile.py):
#
#   docker build --target operator -t ghcr.io/whisperft/operator:0.1.0 .
#   docker build --target trainer  -t ghcr.io/whisperft/trainer:0.1.0 .
#
# operator: python slim + whisperft[operator] (Kopf, kubernetes; no torch).
# trainer:  the Ray image of the Ray version we pin (CUDA, Python 3.11)
#           + whisperft[trainer] (torch, DeepSpeed, transformers, ...).

# The Ray tag must carry requirements.lock's ray version and Python 3.11.
# "-gpu" is Ray's alias for its default CUDA build; torch's CUDA libraries
# come from the lock as pip wheels, so the node driver must support them.
# Bases are pinned by the digest of their multi-architecture index (the tag is
# kept for people); hack/pin-images.sh re-resolves them where a registry is
# reachable. The Ray image's digest could not be resolved from the development
# machine (no registry reachable): pin it at release with that script.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
ARG VERSION=0.1.0

# ---------------------------------------------------------------------------
# The whisperft wheel, built once (no dependencies) for both images. The build
# backend pins satisfy pyproject's [build-system] requires and stay here.
FROM ${PYTHON_IMAGE} AS wheel
ARG SETUPTOOLS_VERSION=84.2.1
ARG WHEEL_VERSION=0.48.0
WORKDIR /src
RUN pip install --no-cache-dir "setuptools==${SETUPTOOLS_VERSION}" "wheel==${WHEEL_VERSION}"
COPY pyproject.toml README.md ./
COPY whisperft/ whisperft/
COPY operator/ operator/
COPY trainer/ trainer/
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator
ARG VERSION
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="whisperft-operator" \
      org.opencontainers.image.description="Kopf operator that runs WhisperFineTune resources as KubeRay RayJobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/whisperft/whisperft" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="whisperft"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-bootstrap.lock requirements.lock /tmp/
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements-bootstrap.lock \
    && pip install --no-cache-dir --only-binary=:all: -c /tmp/requirements.lock \
        "whisperft[operator] @ file:///tmp/wheels/whisperft-${VERSION}-py3-none-any.whl" \
    && pip check \
    && rm -rf /tmp/wheels /tmp/requirements.lock /tmp/requirements-bootstrap.lock
# Numeric, so Kubernetes can verify runAsNonRoot; the chart runs it as 10001.
RUN groupadd --gid 10001 whisperft \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin whisperft
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["whisperft"]
CMD ["operator", "run"]

# ---------------------------------------------------------------------------
FROM ${RAY_IMAGE} AS trainer
ARG VERSION
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="whisperft-trainer" \
      org.opencontainers.image.description="Whisper fine-tuning with Ray Train and DeepSpeed, run by the whisperft operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/whisperft/whisperft" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="whisperft"
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    DS_BUILD_OPS=0
COPY --chown=1000:100 requirements-bootstrap.lock requirements.lock /tmp/
COPY --from=wheel --chown=1000:100 /wheels /tmp/wheels
# torch first: DeepSpeed's source distribution imports it while building, so
# it is built without isolation against the locked torch. The constraints
# move anything the Ray image ships at another version to the locked one.
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements-bootstrap.lock \
    && pip install --no-cache-dir -c /tmp/requirements.lock torch \
    && pip install --no-cache-dir --no-build-isolation -c /tmp/requirements.lock \
        "whisperft[trainer] @ file:///tmp/wheels/whisperft-${VERSION}-py3-none-any.whl" \
    && rm -rf /tmp/wheels /tmp/requirements.lock /tmp/requirements-bootstrap.lock
# The Ray image's own non-root user (uid 1000, gid 100); the operator renders
# the Ray pods with the same runAsUser/fsGroup.
USER 1000:100
WORKDIR /home/ray
