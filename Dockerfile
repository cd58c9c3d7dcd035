# deepafx-rt on Debian bookworm: the same install script as the README and CI.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/deepafx-rt
COPY . .
RUN ./install.sh && rm -rf /var/lib/apt/lists/*

ENV PATH="/opt/deepafx-rt/.venv/bin:${PATH}"
ENTRYPOINT ["deepafx-rt"]
CMD ["demo", "--out", "/tmp/demo-output"]
