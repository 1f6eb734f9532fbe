#!/usr/bin/env python3
"""Reads tanma-connector's change events and its customer table, and prints a JSON summary.

Both topics are read with isolation.level=read_committed: the connector writes events, snapshots
and its checkpoint in one Kafka transaction, and only committed transactions are the stream.
Values are in the Confluent wire format (0x00, 4-byte schema id, Avro binary); the writer schema
is fetched by id from the registry's Confluent-compatible API and resolved against the reader
schema this consumer ships with (the repository's schemas/*.avsc), so a producer's newer schema
(an added field, a new event type) still reads: an unknown event type reads as UNKNOWN.

    python consumer.py --bootstrap-servers HOSTS --registry-url URL \
        [--events-topic NAME] [--state-topic NAME] [--table-out FILE]

Exit codes: 0 ok, 1 a record could not be decoded or a topic not read, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

EVENT_ID_HEADER = "event_id"
DEFAULT_SCHEMAS = Path(__file__).resolve().parent.parent.parent / "schemas"


class DecodeError(Exception):
    """A record that could not be decoded."""


class WireDecoder:
    """Confluent wire format → dict, resolving the writer schema against our reader schema."""

    def __init__(self, registry_url: str, reader_schema: dict):
        self.registry_url = registry_url.rstrip("/")
        self.reader = fastavro.parse_schema(reader_schema, named_schemas={})
        self.writers: dict[int, dict] = {}

    def schema_ids(self) -> list[int]:
        return sorted(self.writers)

    def decode(self, value: bytes | None) -> dict:
        if value is None or len(value) < 5 or value[0] != 0:
            raise DecodeError("not in the Confluent wire format (no magic byte 0 + schema id)")
        schema_id = int.from_bytes(value[1:5], "big")
        writer = self.writers.get(schema_id)
        if writer is None:
            writer = self.writers[schema_id] = self._writer_schema(schema_id)
        body = io.BytesIO(memoryview(value)[5:])
        try:
            record = fastavro.schemaless_reader(body, writer, self.reader)
        except Exception as e:  # fastavro raises many types for bad bytes or unresolvable schemas
            raise DecodeError(f"schema id {schema_id}: {type(e).__name__}: {e}") from e
        if body.tell() != len(value) - 5:
            raise DecodeError(f"schema id {schema_id}: bytes left after the record")
        return record

    def _writer_schema(self, schema_id: int) -> dict:
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        auth = os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH")
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = json.load(resp)
            if answer.get("schemaType", "AVRO") != "AVRO":
                raise DecodeError(f"schema id {schema_id} is {answer['schemaType']}, not AVRO")
            return fastavro.parse_schema(json.loads(answer["schema"]), named_schemas={})
        except DecodeError:
            raise
        except Exception as e:
            raise DecodeError(f"GET {url}: {type(e).__name__}: {e}") from e


def record_error(counter: dict, msg, why: str) -> None:
    counter["decode_errors"] += 1
    print(f"{msg.topic()}/{msg.partition()}@{msg.offset()}: {why}", file=sys.stderr)


class EventStats:
    """Change events, deduplicated by their event_id header (deterministic per change)."""

    def __init__(self, decoder: WireDecoder):
        self.decoder = decoder
        self.seen: set[str] = set()
        self.by_type: dict[str, int] = {}
        self.counts = {"records": 0, "duplicates_dropped": 0, "decode_errors": 0}

    def accept(self, msg) -> None:
        self.counts["records"] += 1
        header = next((v for k, v in (msg.headers() or []) if k == EVENT_ID_HEADER), None)
        if header is None:
            return record_error(self.counts, msg, f"no {EVENT_ID_HEADER} header")
        event_id = header.decode("utf-8")
        if event_id in self.seen:
            self.counts["duplicates_dropped"] += 1
            return None
        try:
            event = self.decoder.decode(msg.value())
        except DecodeError as e:
            return record_error(self.counts, msg, str(e))
        if event["event_id"] != event_id:
            why = f"header event_id {event_id} differs from the value's {event['event_id']}"
            return record_error(self.counts, msg, why)
        self.seen.add(event_id)
        # Written with a newer schema whose event type we do not know, this reads as UNKNOWN.
        self.by_type[event["event_type"]] = self.by_type.get(event["event_type"], 0) + 1
        return None


class CustomerTable:
    """Latest snapshot per externalUserId from the compacted state topic; a tombstone removes."""

    def __init__(self, decoder: WireDecoder):
        self.decoder = decoder
        self.rows: dict[str, tuple[int, str]] = {}
        self.counts = {"records": 0, "tombstones": 0, "decode_errors": 0}

    def accept(self, msg) -> None:
        self.counts["records"] += 1
        if msg.key() is None:
            return record_error(self.counts, msg, "record without a key")
        key = msg.key().decode("utf-8")
        if msg.value() is None:
            self.counts["tombstones"] += 1
            self.rows.pop(key, None)
            return None
        try:
            snapshot = self.decoder.decode(msg.value())
        except DecodeError as e:
            return record_error(self.counts, msg, str(e))
        if snapshot["external_user_id"] != key:
            why = f"key {key} holds the snapshot of {snapshot['external_user_id']}"
            return record_error(self.counts, msg, why)
        self.rows[key] = (snapshot["revision"], snapshot["fingerprint"])
        return None

    def lines(self) -> list[str]:
        """"externalUserId TAB revision TAB fingerprint", sorted by externalUserId (code points)."""
        return [f"{k}\t{self.rows[k][0]}\t{self.rows[k][1]}" for k in sorted(self.rows)]


def sha256_lines(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update((line + "\n").encode("utf-8"))
    return h.hexdigest()


def read_to_end(consumer: Consumer, topic: str, timeout: float, handle) -> None:
    """Reads every partition of `topic` from the beginning to the end offsets taken at the start.

    Positions move past transaction markers and aborted records too (never returned under
    read_committed), so the loop ends when every partition's position reaches its end offset.
    """
    deadline = time.monotonic() + timeout
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    parts = sorted(meta.partitions)
    ends = {}
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    try:
        while True:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic}: end offsets {ends} not reached within {timeout:.0f} s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            handle(msg)
    finally:
        consumer.unassign()


def consumer_config(args) -> dict:
    conf = {}
    if args.consumer_config:
        for n, line in enumerate(Path(args.consumer_config).read_text("utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise SystemExit(f"error: {args.consumer_config}:{n}: expected key=value")
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip()
    conf.update(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "client.id": "tanma-python-consumer",
            # Only committed transactions are the stream.
            "isolation.level": "read_committed",
            # Partitions are assigned by hand; the group id is required by the client but no
            # group is joined and no offset is committed.
            "group.id": "tanma-python-consumer-example",
            "enable.auto.commit": False,
        }
    )
    return conf


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", default=env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--registry-url", default=env("SCHEMA_REGISTRY_URL"), help="env SCHEMA_REGISTRY_URL")
    p.add_argument("--events-topic", default=env("TANMA_TOPICS__EVENTS", "tanma.customer.events"))
    p.add_argument("--state-topic", default=env("TANMA_TOPICS__STATE", "tanma.customer.state"))
    p.add_argument("--schemas-dir", type=Path, default=Path(env("TANMA_SCHEMAS_DIR", DEFAULT_SCHEMAS)),
                   help="where the reader schemas (*.avsc) are")
    p.add_argument("--consumer-config",
                   help="extra client properties, key=value lines (security.protocol, sasl.*, ssl.*)")
    p.add_argument("--table-out", help='write the table, one "id<TAB>revision<TAB>fingerprint" line each')
    p.add_argument("--timeout-secs", type=float, default=120.0)
    args = p.parse_args(argv)
    if not args.registry_url:
        p.error("no schema registry: pass --registry-url or set SCHEMA_REGISTRY_URL")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    load = lambda name: json.loads((args.schemas_dir / name).read_text("utf-8"))  # noqa: E731
    event_decoder = WireDecoder(args.registry_url, load("customer_change_event.avsc"))
    snapshot_decoder = WireDecoder(args.registry_url, load("customer_snapshot.avsc"))
    events, table = EventStats(event_decoder), CustomerTable(snapshot_decoder)
    consumer = Consumer(consumer_config(args))
    try:
        read_to_end(consumer, args.events_topic, args.timeout_secs, events.accept)
        read_to_end(consumer, args.state_topic, args.timeout_secs, table.accept)
    except (KafkaException, RuntimeError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
    lines = table.lines()
    if args.table_out:
        Path(args.table_out).write_text("".join(line + "\n" for line in lines), "utf-8")
    summary = {
        "consumer": "python",
        "events": {
            "topic": args.events_topic,
            **events.counts,
            "by_type": dict(sorted(events.by_type.items())),
            "distinct_event_ids": len(events.seen),
            "writer_schema_ids": event_decoder.schema_ids(),
            "event_ids_sha256": sha256_lines(sorted(events.seen)),
        },
        "customers": {
            "topic": args.state_topic,
            **table.counts,
            "count": len(table.rows),
            "writer_schema_ids": snapshot_decoder.schema_ids(),
            "table_sha256": sha256_lines(lines),
        },
    }
    print(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False))
    return 0 if events.counts["decode_errors"] + table.counts["decode_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
