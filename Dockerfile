# haproxy-receiver container image.
#
#   docker build -t haproxy-receiver .
#   docker run -d --name haproxy-receiver -p 5140:5140/udp -p 5140:5140/tcp -p 9514:9514 \
#     -v haproxy-receiver-spool:/var/lib/haproxy-receiver \
#     -e HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS=https://es:9200 \
#     -e HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME=shipper \
#     -e HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD=... haproxy-receiver
#
# GeoIP (source.geo.*, the Kibana map): the image has the geoip extra; mount a MaxMind database
# and set HAPROXY_RECEIVER_PARSE__GEOIP_DATABASE to its path.
#
# The default command binds 0.0.0.0 (the program's own default is 127.0.0.1, right for a host
# install but useless in a container). Any other command replaces it, e.g.
# `docker run --rm -i haproxy-receiver parse < haproxy.log` or `... check-config`.

# Build stage: wheels of the package and its dependencies, so the runtime stage has no compiler
# or build cache. The C compiler builds the package's compiled nesting writer
# (receiver/ship/_nested.c: bulk encoding ~2 µs an event cheaper); the image's Python has the
# headers.
FROM python:3.11-slim AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY receiver ./receiver
# receiver/assets/ links to these folders: the wheel carries their files (dashboards, HAProxy
# configurations, systemd unit) for `haproxy-receiver export` and `setup --kibana`.
COPY dashboards ./dashboards
COPY haproxy ./haproxy
COPY deploy/systemd ./deploy/systemd
# The geoip extra: source.geo.* (the Kibana map) needs maxminddb once a database is mounted.
# The kafka extra: confluent-kafka (librdkafka bundled) for the Kafka path, `run` producing and
# `consume` workers (README: "Fleet"); unused, it is never imported.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[geoip,kafka]'

FROM python:3.11-slim
# A fixed numeric id so Kubernetes' runAsNonRoot can verify it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 haproxy-receiver \
 && useradd --system --uid 10001 --gid haproxy-receiver --no-create-home \
      --home-dir /var/lib/haproxy-receiver --shell /usr/sbin/nologin haproxy-receiver \
 && install -d -o haproxy-receiver -g haproxy-receiver -m 0750 \
      /var/lib/haproxy-receiver /var/lib/haproxy-receiver/spool
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels 'haproxy-receiver[geoip,kafka]' \
 && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/haproxy-receiver
# The spool: events accepted but not yet acknowledged by Elasticsearch survive the container.
VOLUME ["/var/lib/haproxy-receiver"]
# 6514: syslog over TLS, once listen.tls names it (the README's aggregator publishes it).
EXPOSE 5140/udp 5140/tcp 6514/tcp 9514/tcp
# Liveness only; readiness (/readyz) is for orchestrators that route traffic.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9514/healthz', timeout=2)"]
ENTRYPOINT ["haproxy-receiver"]
CMD ["run", "--udp", "0.0.0.0:5140", "--tcp", "0.0.0.0:5140", "--metrics", "0.0.0.0:9514", \
     "--spool-dir", "/var/lib/haproxy-receiver/spool"]
