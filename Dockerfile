# syntax=docker/dockerfile:1
# tickq: the HTTP API and the job engine (`python -m tickq serve`) in one container.
#
#   docker build -t tickq .
#   docker run --rm -p 127.0.0.1:3011:3011 \
#       -e JWT_SECRET="$(openssl rand -hex 32)" \
#       -e TICKQ_DATABASE_URL=postgresql://tickq:secret@db-host:5432/tickq tickq
#
# The image runs with TICKQ_ENV=production, which means:
#   * JWT_SECRET (at least 32 bytes) or JWT_PUBLIC_KEY is required: the service refuses to start
#     without one (there is no ephemeral development secret and no printed admin token);
#   * TICKQ_DATABASE_URL should name a PostgreSQL database when several containers run
#     (docker-compose.yml); without it the SQLite journal lives in /var/lib/tickq, which is
#     owned by the service user: mount a volume there, and run one container per journal;
#   * memory:// is refused (jobs must be durable);
#   * integrations that are not configured (Stripe, SMTP, Twilio, ...) are reported as
#     "not configured" by /health/ready and their jobs fail with that reason.
# Every other variable is listed in README.md ("Configuration").

# --- build: wheels for tickq and its dependencies (PostgreSQL extra, no dev tools) ---------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tickq ./tickq
RUN python -m pip wheel --wheel-dir /wheels ".[postgres]"

# --- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "tickq[postgres]"

RUN groupadd --system --gid 10001 tickq \
    && useradd --system --uid 10001 --gid tickq --home-dir /var/lib/tickq \
       --shell /usr/sbin/nologin tickq \
    && install -d -o tickq -g tickq -m 0750 /var/lib/tickq

# Inside a container the service must listen on the container's interface, not on loopback.
ENV TICKQ_ENV=production \
    HOST=0.0.0.0 \
    PORT=3011 \
    TICKQ_DATA_DIR=/var/lib/tickq \
    LOG_FORMAT=json

USER tickq
WORKDIR /var/lib/tickq
VOLUME ["/var/lib/tickq"]
EXPOSE 3011

# Slim images have no curl: ask /health/ready with the standard library (an HTTP error such as
# 503 raises, which makes the check fail).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3011') + '/health/ready', timeout=4)"]

# SIGTERM (docker stop) lets running jobs finish for TICKQ_SHUTDOWN_GRACE_S (default 30 s):
# give `docker stop` / compose a stop timeout longer than that.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "tickq", "serve"]
