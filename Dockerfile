# syntax=docker/dockerfile:1
# The wallet API image: `wallet serve` as a non-root user. Build: docker build -t wallet .
# Runtime dependencies come only from the hash-pinned requirements.lock.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/wallet
COPY requirements.lock /build/requirements.lock
RUN /opt/wallet/bin/pip install --require-hashes --no-deps -r /build/requirements.lock
COPY pyproject.toml /build/
COPY src /build/src
# The project itself (its build backend, hatchling, is fetched into pip's isolated build env).
RUN /opt/wallet/bin/pip install --no-deps /build

FROM python:3.11-slim
RUN groupadd --system --gid 10001 wallet \
    && useradd --system --uid 10001 --gid wallet --home-dir /var/lib/wallet --create-home \
        --shell /usr/sbin/nologin wallet
COPY --from=build /opt/wallet /opt/wallet
ENV PATH=/opt/wallet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/wallet
USER wallet:wallet
EXPOSE 8000
# Liveness only (GET /healthz makes no database call); slim has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["wallet"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
