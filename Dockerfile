# syntax=docker/dockerfile:1
# DNA Bot image: `dnabot` installed from pyproject.toml (no dev extras), run as a non-root user.
#   docker build -t dnabot .
#   docker run --rm dnabot --help
# Default command: `dnabot serve --http` on port 3000 (POST /slack/events, POST /openmetadata/webhook,
# GET /healthz, GET /metrics). Configuration comes from the environment only (see .env.example).
# The MCP servers (tavily-mcp, @brightdata/mcp) are installed here from agents/mcp_servers/package-lock.json and
# launched with `node` at run time: nothing is downloaded when the bot starts.

# ---- build: wheels for dnabot and every dependency (setuptools and any compiler stay in this stage) ----------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY storage ./storage
COPY agents ./agents
COPY bot ./bot
COPY simulator ./simulator
RUN pip wheel --wheel-dir /wheels .

# ---- mcp: the MCP servers from the lockfile (Node 22 LTS satisfies every engine in it) --------------------------
FROM node:22-bookworm-slim AS mcp
WORKDIR /opt/dnabot
COPY agents/mcp_servers/package.json agents/mcp_servers/package-lock.json ./agents/mcp_servers/
RUN npm ci --prefix agents/mcp_servers --ignore-scripts --no-audit --no-fund --omit=dev \
    && npm cache clean --force

# ---- runtime ---------------------------------------------------------------------------------------------------
FROM python:3.11-slim
# libpq5: psycopg 3 (SQLAlchemy's `postgresql` extra) is pure Python and loads libpq at run time.
# fonts-dejavu-core: the lineage PNG's font (Pillow's bundled one is used without it).
# libstdc++6: the node binary copied below links it (the MCP servers run on it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 fonts-dejavu-core libstdc++6 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=mcp /usr/local/bin/node /usr/local/bin/node
COPY --from=mcp /opt/dnabot/agents/mcp_servers /opt/dnabot/mcp_servers
RUN groupadd --system --gid 10001 dnabot \
    && useradd --system --uid 10001 --gid dnabot --home-dir /home/dnabot --create-home --shell /usr/sbin/nologin dnabot
# The wheels are bind-mounted, not copied, so they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 pip install --no-cache-dir --no-index --find-links=/wheels dnabot

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DNABOT_MCP_SERVERS_DIR=/opt/dnabot/mcp_servers
USER dnabot:dnabot
# The working directory is writable by the bot (a SQLite DATABASE_URL default lands here; use PostgreSQL with
# more than one replica).
WORKDIR /home/dnabot
EXPOSE 3000
# No curl in slim images: the interpreter does the probe. GET /healthz answers 200 while the process serves.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
ENTRYPOINT ["dnabot"]
CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "3000"]
