# syntax=docker/dockerfile:1
# The hub's container image: `docker build -t pconnect-hub .` (deploy/compose.yml runs it).
# Built with the Rust toolchain image, run on debian:bookworm-slim as a non-root user with its
# state in the /data volume.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# deploy/dist builds with the `dist` profile and splits the debug info off (dist/pconnect-hub.debug).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/dist pconnect-hub

# `docker build --target debug --output dist .` exports the debug info matching the image's binary.
FROM scratch AS debug
COPY --from=build /src/dist/pconnect-hub.debug /

FROM debian:bookworm-slim
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin pconnect \
    && mkdir /data && chown pconnect:pconnect /data && chmod 0700 /data
COPY --from=build /src/dist/pconnect-hub /usr/local/bin/pconnect-hub
COPY deploy/healthcheck /usr/local/bin/pconnect-hub-healthcheck
USER pconnect:pconnect
# Store, certificate, key and admin socket. A new named volume starts owned by `pconnect`.
VOLUME /data
# Settings are PCONNECT_HUB_* variables (-e PCONNECT_HUB_DOMAIN=hub.example.com) or a file named by
# PCONNECT_HUB_CONFIG; `pconnect-hub member add alice` finds the data through this one.
ENV PCONNECT_HUB_DATA=/data
# The hub's defaults: 7779 agents (TLS), 7780 plain HTTP (/healthz, public links).
EXPOSE 7779 7780
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["pconnect-hub-healthcheck", "7780"]
# SIGTERM drains for the grace period (10 s by default): give `docker stop` longer (compose does).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pconnect-hub"]
CMD ["serve"]
