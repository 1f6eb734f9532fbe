package com.tanma.examples;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * The current customer table, built from the compacted state topic: the latest
 * {@code CustomerSnapshot} per key (externalUserId); a null value (tombstone) means the customer
 * is gone. Kept here as revision and fingerprint only; a real consumer would keep the snapshot.
 */
final class CustomerTable {
  /** One customer: its revision and the fingerprint of its content. */
  record Row(long revision, String fingerprint) {}

  private final WireDecoder decoder;
  final Map<String, Row> rows = new HashMap<>();
  long records;
  long tombstones;
  long errors;

  CustomerTable(WireDecoder decoder) {
    this.decoder = decoder;
  }

  void accept(ConsumerRecord<byte[], byte[]> r) {
    records++;
    if (r.key() == null) {
      error(r, "record without a key");
      return;
    }
    String key = new String(r.key(), StandardCharsets.UTF_8);
    if (r.value() == null) {
      tombstones++;
      rows.remove(key);
      return;
    }
    GenericRecord snapshot;
    try {
      snapshot = decoder.decode(r.value());
    } catch (WireDecoder.DecodeException e) {
      error(r, e.getMessage());
      return;
    }
    String id = String.valueOf(snapshot.get("external_user_id"));
    if (!id.equals(key)) {
      error(r, "key " + key + " holds the snapshot of " + id);
      return;
    }
    rows.put(key, new Row((Long) snapshot.get("revision"), String.valueOf(snapshot.get("fingerprint"))));
  }

  /** "externalUserId TAB revision TAB fingerprint", sorted by externalUserId. */
  List<String> lines() {
    return Digest.sortedUtf8(rows.keySet()).stream()
        .map(id -> id + "\t" + rows.get(id).revision() + "\t" + rows.get(id).fingerprint())
        .toList();
  }

  private void error(ConsumerRecord<byte[], byte[]> r, String why) {
    errors++;
    System.err.printf("%s/%d@%d: %s%n", r.topic(), r.partition(), r.offset(), why);
  }
}
