#!/usr/bin/env bash
# One command to see the exporter work on this machine: installs the Kafka-protocol broker
# the tests use (noida-db 0.2.3 from crates.io, into target/tmp/tools, once), starts it on
# 127.0.0.1:${KAFKA_PORT:-9092}, and runs the exporter against it on
# 127.0.0.1:${LISTEN_PORT:-9308}. Ctrl-C stops both. Then, in another shell:
#   curl -s 127.0.0.1:9308/metrics | grep ^kafka_
set -euo pipefail
cd "$(dirname "$0")/.."

kafka_port="${KAFKA_PORT:-9092}"
listen_port="${LISTEN_PORT:-9308}"
tools="$PWD/target/tmp/tools"   # the same place the tests install it
noida="$tools/bin/noida-db"

if [[ ! -x "$noida" ]]; then
    echo "installing noida-db 0.2.3 into $tools (about a minute, once)"
    cargo install noida-db --version 0.2.3 --locked --no-default-features --features kafka \
        --root "$tools" --quiet
fi

data_dir="$(mktemp -d)"
"$noida" start --only kafka --host 127.0.0.1 --kafka-port "$kafka_port" --data-dir "$data_dir" \
    > "$data_dir/broker.log" 2>&1 &
broker_pid=$!
trap 'kill "$broker_pid" 2>/dev/null || true; rm -rf "$data_dir"' EXIT

# Bounded wait for the broker's port (30 s).
for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null; then
        break
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "noida-db exited; its log:" >&2
        cat "$data_dir/broker.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "broker on 127.0.0.1:$kafka_port; exporter on http://127.0.0.1:$listen_port/metrics"
cargo run --release -q -p trial-exporter -- --bootstrap-servers "127.0.0.1:$kafka_port" \
    --listen "127.0.0.1:$listen_port" --cluster-name local --interval 5
