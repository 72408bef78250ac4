# The code location image: the gRPC server of refresh_assets.definitions (Helm: dagster-user-deployments),
# and the image of every run pod (K8sRunLauncher) and step pod (k8s_job_executor). docs/DEPLOY.md.
#
#   docker build -t registry.example.com/refresh-assets:$(git rev-parse --short HEAD) .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    UV_SYSTEM_PYTHON=1 \
    UV_NO_CACHE=1

WORKDIR /opt/dagster/app

# Runtime dependencies pinned by the lock file (the lock's test tools are not installed: it is only a
# constraint here), plus the object-store filesystems the outputs and warehouse URLs need (s3fs for s3://,
# same calendar version as fsspec in the lock) and dagster-aws for S3 compute logs.
COPY requirements.lock pyproject.toml README.md ./
COPY refresh_assets ./refresh_assets
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip install -c requirements.lock . s3fs==2026.9.0 dagster-aws==0.29.27

# Steps write nothing next to the code: outputs go to REFRESH_ASSETS_OUTPUTS (object store), the registry
# to the shared volume under REFRESH_ASSETS_DATA_DIR.
RUN useradd --create-home --uid 1000 dagster \
 && mkdir -p "$DAGSTER_HOME" /mnt/refresh-assets \
 && chown -R dagster "$DAGSTER_HOME" /mnt/refresh-assets
USER dagster

EXPOSE 3030 8000
# The Helm chart runs `dagster api grpc` with dagsterApiGrpcArgs itself; this default serves the same.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "refresh_assets.definitions"]
# Second entrypoint, the real-time scorer (docs/DEPLOY.md "Real-time scorer replicas"): run the same image with
#   refresh-assets --data-dir /mnt/refresh-assets scorer --host 0.0.0.0 --port 8000
# behind your gateway; every replica reads the one registry on the shared volume and swaps on its own.
