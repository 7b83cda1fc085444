#!/bin/sh
# One-shot topic creation for the support KPI stack (run by the `topics` service).
#
# Every input topic gets the same partition count (SPEC §2: a ticket's events must land on
# the same partition number in every topic). `support-kpis` is compacted: downstream
# services read the latest value of every KPI key from the beginning.
# An existing topic with a different partition count is an error, never silently altered.
set -eu

BOOTSTRAP="${SUPPORT_KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${SUPPORT_PARTITIONS:-8}"
REPLICATION="${SUPPORT_REPLICATION_FACTOR:-1}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
CLIENT_CONFIG="${SUPPORT_KAFKA_CLIENT_CONFIG:-}"

set -- --bootstrap-server "$BOOTSTRAP"
if [ -n "$CLIENT_CONFIG" ]; then
    set -- "$@" --command-config "$CLIENT_CONFIG"
fi

echo "waiting for Kafka at $BOOTSTRAP"
tries=0
until "$KAFKA_BIN/kafka-topics.sh" "$@" --list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "Kafka at $BOOTSTRAP not reachable after 60 attempts" >&2
        exit 1
    fi
    sleep 2
done

create() {
    topic="$1"
    shift
    "$KAFKA_BIN/kafka-topics.sh" "$@" --create --if-not-exists --topic "$topic" \
        --partitions "$PARTITIONS" --replication-factor "$REPLICATION" $TOPIC_CONFIG
    actual=$("$KAFKA_BIN/kafka-topics.sh" "$@" --describe --topic "$topic" \
        | sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
    if [ "$actual" != "$PARTITIONS" ]; then
        echo "topic $topic has $actual partitions, expected $PARTITIONS (SUPPORT_PARTITIONS);" \
            "all input topics must have the same count" >&2
        exit 1
    fi
    echo "topic $topic: $actual partitions"
}

TOPIC_CONFIG=""
for topic in ticket-created ticket-replied ticket-escalated ticket-status-changed \
    survey-submitted customer-lifecycle support-events-dlq; do
    create "$topic" "$@"
done

TOPIC_CONFIG="--config cleanup.policy=compact --config min.compaction.lag.ms=60000"
create support-kpis "$@"

echo "all topics ready"
