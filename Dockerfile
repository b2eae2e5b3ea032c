# pgmove bot/worker image: Python plus the PostgreSQL client programs of every supported major,
# so pg_dump is never older than the source server.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-13 postgresql-client-14 postgresql-client-15 \
      postgresql-client-16 postgresql-client-17 postgresql-client-18 \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 pgmove
WORKDIR /app
COPY pyproject.toml README.md ./
COPY state state
COPY handlers handlers
COPY steps steps
COPY worker worker
COPY bot bot
COPY cli cli
COPY sandbox sandbox
COPY pgmove pgmove
RUN pip install --no-cache-dir .

# work_dir (staged schema dumps) and archive_dir (freeze --archive) live here: a volume, so archives
# outlive the container. The config goes to /etc/pgmove/pgmove.toml (mounted read-only).
RUN install -d -o pgmove -g pgmove /var/lib/pgmove /var/lib/pgmove/work /var/lib/pgmove/archives
VOLUME ["/var/lib/pgmove"]

USER pgmove
ENV PGMOVE_CONFIG=/etc/pgmove/pgmove.toml
# `pgmove bot --port 3000` in HTTP mode serves Slack's requests at /slack/events (Socket Mode opens no port).
EXPOSE 3000
# Redis reachable and the configuration valid; compose.yaml adds --worker-here for workers (their heartbeat).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["pgmove", "health"]
ENTRYPOINT ["pgmove"]
CMD ["worker"]
