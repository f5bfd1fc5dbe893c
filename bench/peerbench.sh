#!/usr/bin/env bash
# One command: haproxy-receiver beside syslog-ng and rsyslog (disk-assisted queue), same load
# generator, same null Elasticsearch sink, same run (../shared/bench/peerbench.py).
#   bash bench/peerbench.sh                                   # every default scenario, 2 runs
#   bash bench/peerbench.sh --scenarios udp-50k,tcp-max --repeat 1 --scale 0.5
# Extra arguments go to peerbench.py. Results: bench/results/peerbench.{json,md}.
# The one file of this repository that reads outside it: the peer harness (load generator,
# null sink, the peers' installers, peerbench.py) is shared with other projects and lives in
# ../shared/bench (SHARED_BENCH points elsewhere). Nothing in tests/ or CI uses it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bench=${SHARED_BENCH:-$repo/../shared/bench}
peers=${PEERS:-"syslog-ng rsyslog-disk"}
if [ ! -f "$bench/peerbench.py" ]; then
    echo "bench/peerbench.sh: needs the shared peer harness in $bench (not part of this" \
         "repository; set SHARED_BENCH); a clone alone runs bench/ship_bench.py," \
         "bench/parse_bench.py, bench/spool_bench.py and bench/ingest_bench.py" >&2
    exit 2
fi

if [ "$(id -u)" = 0 ]; then
    if [[ " $peers " == *" rsyslog"* ]] && ! command -v rsyslogd >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-elasticsearch >/dev/null
    fi
    if [[ " $peers " == *" syslog-ng"* ]] && [ ! -x /opt/syslog-ng/usr/sbin/syslog-ng ]; then
        bash "$bench/peers/syslog-ng/install.sh"
    fi
fi
# The receiver runs from the checkout's virtual environment (made as the quick start makes it).
[ -x "$repo/.venv/bin/python" ] || bash "$repo/deploy/venv.sh" "$repo/.venv" "$repo"
python="$repo/.venv/bin/python"

mkdir -p "$repo/bench/results"
receiver="custom:cd $repo && exec $python -m receiver run --udp 127.0.0.1:{udp_port} --tcp 127.0.0.1:{tcp_port} --elasticsearch {sink_url} --spool-dir {workdir}/spool --metrics ''"
args=(--sut "$receiver")
for peer in $peers; do args+=(--sut "$peer"); done
cd "$bench"
exec python3 peerbench.py "${args[@]}" --out "$repo/bench/results/peerbench.json" \
    --md "$repo/bench/results/peerbench.md" "$@"
