#!/usr/bin/env python3
"""scripts/examples-check's probes: records a consumer of our topics must cope with, written
after the connector has stopped (run with the examples' venv: confluent-kafka + fastavro).

1. a duplicate: the first committed event, written again with the same key, value and headers
   (as a replayed range would) -> the consumers drop it by its event_id header;
2. an event written with an evolved schema: EventType gains a symbol no reader knows yet (MERGED,
   registered under the events subject, as a newer connector would) -> readers resolve it to
   UNKNOWN, the enum's default;
3. a tombstone on the state topic for --tombstone KEY -> the customer leaves the table;
4. an aborted transaction holding an undecodable event and snapshot -> read_committed consumers
   never see them (a read_uncommitted one would report decode errors).

Prints what it wrote as JSON on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

# Keys go to the partition the connector's (Java-compatible, murmur2) partitioner picks, so a
# tombstone follows its customer's snapshots in the same partition.
PRODUCER = {"partitioner": "murmur2_random", "enable.idempotence": True}
ABORTED_ID = b"examples-check-aborted"
# An event type newer than every reader (the connector's schema already has DELETED).
FUTURE_TYPE = "MERGED"


def first_event(bootstrap: str, topic: str, timeout: float = 30.0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"examples-inject-{uuid.uuid4()}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error() and m.value() is not None:
                return m
        raise SystemExit(f"examples_inject: no committed event in {topic} within {timeout} s")
    finally:
        c.close()


def register(registry: str, subject: str, schema: dict) -> int:
    body = json.dumps({"schema": json.dumps(schema)}).encode()
    req = urllib.request.Request(f"{registry.rstrip('/')}/subjects/{subject}/versions", data=body,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.load(resp)["id"])


def evolved_event_schema(schemas: Path) -> dict:
    schema = json.loads((schemas / "customer_change_event.avsc").read_text("utf-8"))
    event_type = next(f for f in schema["fields"] if f["name"] == "event_type")
    event_type["type"]["symbols"].append(FUTURE_TYPE)
    return schema


def future_event(schema: dict, schema_id: int, key: str, event_id: str) -> bytes:
    now = int(time.time() * 1000)
    record = {
        "event_id": event_id, "event_type": FUTURE_TYPE, "external_user_id": key, "revision": 0,
        "observed_at": now, "window_since": now, "window_before": now, "before": None,
        "after": {"external_user_id": key, "revision": 0, "fingerprint": "", "updated_at": now,
                  "relations": []},
        "changes": [],
    }
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    return out.getvalue()


def flush(p: Producer) -> None:
    if p.flush(30) != 0:
        raise SystemExit("examples_inject: records not delivered within 30 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap-servers", required=True)
    ap.add_argument("--registry-url", required=True)
    ap.add_argument("--events-topic", required=True)
    ap.add_argument("--state-topic", required=True)
    ap.add_argument("--schemas-dir", type=Path, required=True)
    ap.add_argument("--tombstone", required=True, metavar="KEY")
    a = ap.parse_args()
    errors = []
    p = Producer({"bootstrap.servers": a.bootstrap_servers, **PRODUCER})
    report = lambda err, _msg: err and errors.append(str(err))  # noqa: E731

    dup = first_event(a.bootstrap_servers, a.events_topic)
    p.produce(a.events_topic, key=dup.key(), value=dup.value(), headers=dup.headers(),
              partition=dup.partition(), on_delivery=report)
    dup_id = dict(dup.headers())["event_id"].decode()

    schema = evolved_event_schema(a.schemas_dir)
    schema_id = register(a.registry_url, f"{a.events_topic}-value", schema)
    deleted_id = f"examples-check-deleted-{uuid.uuid4()}"
    p.produce(a.events_topic, key=a.tombstone.encode(),
              value=future_event(schema, schema_id, a.tombstone, deleted_id),
              headers=[("event_id", deleted_id.encode()), ("event_type", FUTURE_TYPE.encode())], on_delivery=report)
    p.produce(a.state_topic, key=a.tombstone.encode(), value=None, on_delivery=report)
    flush(p)

    t = Producer({"bootstrap.servers": a.bootstrap_servers, **PRODUCER,
                  "transactional.id": f"examples-check-aborted-{uuid.uuid4()}"})
    t.init_transactions(30)
    t.begin_transaction()
    garbage = b"\x00\xff\xff\xff\xffnot avro"
    aborted = []
    t.produce(a.events_topic, key=ABORTED_ID, value=garbage, headers=[("event_id", ABORTED_ID)],
              on_delivery=lambda err, msg: aborted.append(msg) if not err else errors.append(str(err)))
    t.produce(a.state_topic, key=ABORTED_ID, value=garbage, on_delivery=report)
    flush(t)
    t.abort_transaction(30)

    if errors or len(aborted) != 1:
        print(f"examples_inject: {errors}", file=sys.stderr)
        return 1
    print(json.dumps({
        "duplicated_event_id": dup_id, "deleted_event_id": deleted_id, "evolved_schema_id": schema_id,
        "tombstoned": a.tombstone, "aborted_records": 2,
        "aborted_visible_uncommitted": visible_uncommitted(a.bootstrap_servers, aborted[0]),
    }))
    return 0


def visible_uncommitted(bootstrap: str, written) -> bool:
    """Whether a read_uncommitted reader sees the aborted event: the probe would catch a consumer
    that is not read_committed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"examples-inject-{uuid.uuid4()}",
                  "isolation.level": "read_uncommitted", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(written.topic(), written.partition(), written.offset())])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                return m.key() == ABORTED_ID and dict(m.headers() or [])["event_id"] == ABORTED_ID
        return False
    finally:
        c.close()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"examples_inject: {e}", file=sys.stderr)
        sys.exit(1)
