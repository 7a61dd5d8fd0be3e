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

WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY app/ app/
COPY migrations/ migrations/

# Editable install: the app finds alembic.ini and the migrations beside its package
# (Path(app.__file__).parents[1]), so the package must be imported from /app/app.
# Byte-compiling now means the non-root user never needs to write into /app.
RUN pip install --no-cache-dir -e . \
    && python -m compileall -q app migrations

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# Declared after the chown so a fresh named volume starts out owned by mlops.
VOLUME ["/data"]

EXPOSE 8000

# The slim image has no curl; the interpreter is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]
