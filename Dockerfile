# The mlops retraining control plane: API, scheduler and CLI in one image.

# Pinned patch release: a rebuild gets the same interpreter. Bump deliberately.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLOPS_DATA_DIR=/data

# A fixed uid/gid lets operators chown host-mounted data directories to match.
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --create-home --home-dir /home/mlops \
        --shell /usr/sbin/nologin mlops \
    && mkdir -p /data \
    && chown mlops:mlops /data

# The sources are only needed to build the package: the install carries its migrations and
# alembic.ini (in <prefix>/share/mlops), so /src is removed afterwards.
COPY requirements.lock pyproject.toml README.md alembic.ini /src/
COPY app/ /src/app/
COPY migrations/ /src/migrations/

# The lock file pins every runtime dependency to the tested version (as constraints: the
# dev tools it also pins stay out of the image). pip byte-compiles at install, so the
# non-root user never needs to write into site-packages.
RUN pip install --no-cache-dir -c /src/requirements.lock /src \
    && rm -rf /src

# The working directory: relative source paths in pipeline specs (data/customers.csv)
# resolve here, and it is the default MLOPS_SOURCE_DIRS. Mount your data under /app/data.
WORKDIR /app

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# Declared after the chown so a fresh named volume starts out owned by mlops.
VOLUME ["/data"]

EXPOSE 8000

# The slim image has no curl; the interpreter is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]
