package com.tanma.examples;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;

/**
 * The change events, deduplicated by their {@code event_id} header: the connector writes each
 * change once (exactly-once transactions), but a replayed time range, a restored topic or a
 * producer outside the connector can write the same change again; its {@code event_id} is
 * deterministic, so a consumer drops what it has already applied. The header lets it do so
 * without decoding the value.
 */
final class EventStats {
  static final String EVENT_ID_HEADER = "event_id";

  private final WireDecoder decoder;
  private final Set<String> seen = new HashSet<>();
  final Map<String, Long> byType = new TreeMap<>();
  long records;
  long duplicates;
  long errors;

  EventStats(WireDecoder decoder) {
    this.decoder = decoder;
  }

  void accept(ConsumerRecord<byte[], byte[]> r) {
    records++;
    Header header = r.headers().lastHeader(EVENT_ID_HEADER);
    if (header == null || header.value() == null) {
      error(r, "no " + EVENT_ID_HEADER + " header");
      return;
    }
    String id = new String(header.value(), StandardCharsets.UTF_8);
    if (seen.contains(id)) {
      duplicates++;
      return;
    }
    GenericRecord event;
    try {
      event = decoder.decode(r.value());
    } catch (WireDecoder.DecodeException e) {
      error(r, e.getMessage());
      return;
    }
    if (!id.equals(String.valueOf(event.get("event_id")))) {
      error(r, "header event_id " + id + " differs from the value's " + event.get("event_id"));
      return;
    }
    seen.add(id);
    // Written with a newer schema whose event type we do not know, this reads as UNKNOWN.
    byType.merge(String.valueOf(event.get("event_type")), 1L, Long::sum);
  }

  long distinct() {
    return seen.size();
  }

  /** SHA-256 of the sorted distinct event ids, one per line: equal for equal sets. */
  String idsDigest() {
    List<String> ids = Digest.sortedUtf8(seen);
    return Digest.sha256Lines(ids);
  }

  private void error(ConsumerRecord<byte[], byte[]> r, String why) {
    errors++;
    System.err.printf("%s/%d@%d: %s%n", r.topic(), r.partition(), r.offset(), why);
  }
}
