#!/usr/bin/env python3
"""Independent decoder for tanma-connector records, using fastavro and the .avsc files.

Reads framed records, one per line, base64-encoded, from stdin (or the files named with
--input). Detects the framing by the first bytes:

* Confluent wire format: 0x00, 4-byte big-endian schema id, Avro binary. The id is mapped to a
  schema with --id ID=event or --id ID=snapshot.
* Avro single-object encoding: 0xC3 0x01, 8-byte little-endian CRC-64-AVRO fingerprint of the
  schema's Parsing Canonical Form (computed here by fastavro), Avro binary.

Prints one JSON object per record: {"framing", "schema", "record"}; timestamps as RFC 3339
(UTC, milliseconds). Exits non-zero on any record it cannot decode completely.

    pip install fastavro
    python3 tests/interop/decode.py --schemas schemas --id 1=event --id 2=snapshot < records.b64
"""

import argparse
import base64
import datetime
import io
import json
import os
import struct
import sys

try:
    import fastavro
    from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
except ImportError:
    sys.stderr.write(
        f"fastavro is not installed in {sys.executable}: scripts/test makes .venv with it "
        "(or point TANMA_PYTHON at a Python that has it)\n"
    )
    sys.exit(3)

FILES = {"event": "customer_change_event.avsc", "snapshot": "customer_snapshot.avsc"}


def load(schema_dir):
    schemas, by_fp = {}, {}
    for kind, name in FILES.items():
        with open(os.path.join(schema_dir, name), encoding="utf-8") as f:
            parsed = parse_schema(json.load(f))
        schemas[kind] = parsed
        # fastavro renders the fingerprint as the hex of its little-endian bytes, which is
        # exactly how single-object encoding writes it.
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        by_fp[fp] = kind
    return schemas, by_fp


def to_json(v):
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        )
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    return v


def decode(data, schemas, by_fp, ids):
    if data[:1] == b"\x00" and len(data) >= 5:
        (schema_id,) = struct.unpack(">I", data[1:5])
        if schema_id not in ids:
            raise ValueError(f"unknown Confluent schema id {schema_id}")
        framing, kind, body = "confluent", ids[schema_id], data[5:]
    elif data[:2] == b"\xc3\x01" and len(data) >= 10:
        fp = data[2:10]
        if fp not in by_fp:
            raise ValueError(f"unknown schema fingerprint {fp.hex()}")
        framing, kind, body = "single_object", by_fp[fp], data[10:]
    else:
        raise ValueError(f"unknown framing: {data[:10].hex()}")
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, schemas[kind], None)
    if buf.tell() != len(body):
        raise ValueError(f"{len(body) - buf.tell()} trailing bytes after the {kind} record")
    return {"framing": framing, "schema": kind, "record": to_json(record)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schemas", default=os.path.join(os.path.dirname(__file__), "..", "..", "schemas"))
    p.add_argument("--id", action="append", default=[], help="ID=event|snapshot (Confluent ids)")
    p.add_argument("--input", action="append", default=[], help="file of base64 lines (default stdin)")
    a = p.parse_args()
    ids = {}
    for spec in a.id:
        num, _, kind = spec.partition("=")
        if kind not in FILES:
            p.error(f"--id {spec}: kind must be event or snapshot")
        ids[int(num)] = kind
    schemas, by_fp = load(a.schemas)
    sources = [open(f, encoding="ascii") for f in a.input] or [sys.stdin]
    for src in sources:
        for n, line in enumerate(src, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out = decode(base64.b64decode(line, validate=True), schemas, by_fp, ids)
            except Exception as e:  # report which record failed, then stop
                sys.stderr.write(f"record {n}: {e}\n")
                return 1
            print(json.dumps(out, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
