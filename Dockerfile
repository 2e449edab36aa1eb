# syntax=docker/dockerfile:1
#
# Switchboard in a container:
#   docker build -t switchboard .
#   docker run -d -p 8080:8080 -v switchboard-data:/var/lib/switchboard switchboard
#   docker exec <container> cat /var/lib/switchboard/initial-admin-password
#                                      # the first account's one-time password (or set
#                                      # SWITCHBOARD_INITIAL_ADMIN_PASSWORD)
#
# Settings: environment variables SWITCHBOARD_<KEY> (`__` between nested keys), or a
# configuration file mounted read-only and named by SWITCHBOARD_CONFIG, e.g.
#   -v ./switchboard.toml:/etc/switchboard/switchboard.toml:ro
#   -e SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml
# Environment variables win over the file, so the SWITCHBOARD_LISTEN and
# SWITCHBOARD_DATA_DIR set below also win over `listen` and `data_dir` in it.

# --- Build -----------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole workspace: the server embeds the web client (host/web), the plugin interface
# (wit/) and the guest SDK sources (plugin-api/) at compile time.
COPY . .
# Cache mounts keep the crate registry and the build between image builds; the binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist -p switchboard --locked \
 && install -D -m 0755 target/dist/switchboard /out/switchboard

# --- Run -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to PostgreSQL, S3, identity providers, webhooks.
# curl: the HEALTHCHECK below (the server has no health subcommand).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# A fixed, non-root UID/GID, so that volume ownership is predictable and `USER` is numeric
# (Kubernetes' runAsNonRoot can only check a numeric user).
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid switchboard --home-dir /var/lib/switchboard \
        --no-create-home --shell /usr/sbin/nologin switchboard \
 && install -d -o switchboard -g switchboard -m 0700 /var/lib/switchboard
COPY --from=builder /out/switchboard /usr/bin/switchboard

# The database, jwt.secret, audit.key, uploaded files, plugin cache. Keep it on a volume.
VOLUME ["/var/lib/switchboard"]
WORKDIR /var/lib/switchboard
# `listen` and `data_dir` (config.rs: SWITCHBOARD_ prefix, `__` for nesting). 0.0.0.0: reachable
# through the published port (the default, 127.0.0.1, is not).
ENV SWITCHBOARD_LISTEN=0.0.0.0:8080 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard
EXPOSE 8080
USER 10001:10001

# /healthz: 200 while the database answers. The port is taken from SWITCHBOARD_LISTEN (the
# part after the last `:`), so changing that variable keeps the check right.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${SWITCHBOARD_LISTEN##*:}/healthz" || exit 1

ENTRYPOINT ["/usr/bin/switchboard"]
CMD ["serve"]
