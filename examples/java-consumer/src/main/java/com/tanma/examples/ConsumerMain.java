package com.tanma.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeoutException;
import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads tanma-connector's change events and its customer table, and prints a JSON summary.
 *
 * <p>Both topics are read with {@code isolation.level=read_committed}: the connector writes
 * events, snapshots and its checkpoint in one Kafka transaction, and only committed transactions
 * are the stream; a {@code read_uncommitted} consumer would also see the records of transactions
 * that were aborted (a crash, a fenced zombie) and later written again.
 */
public final class ConsumerMain {
  private ConsumerMain() {}

  public static void main(String[] args) {
    Options opts;
    try {
      opts = Options.parse(args, System.getenv());
    } catch (Options.UsageException e) {
      if (!e.getMessage().isEmpty()) {
        System.err.println("error: " + e.getMessage());
      }
      System.err.print(Options.USAGE);
      System.exit(e.getMessage().isEmpty() ? 0 : 2);
      return;
    }
    try {
      System.exit(run(opts));
    } catch (IOException | TimeoutException | KafkaException | IllegalStateException e) {
      System.err.println("error: " + e.getMessage());
      System.exit(1);
    }
  }

  static int run(Options opts) throws IOException, TimeoutException {
    WireDecoder eventDecoder = new WireDecoder(opts.registryUrl(), readerSchema("customer_change_event.avsc"));
    WireDecoder snapshotDecoder = new WireDecoder(opts.registryUrl(), readerSchema("customer_snapshot.avsc"));
    EventStats events = new EventStats(eventDecoder);
    CustomerTable table = new CustomerTable(snapshotDecoder);
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerConfig(opts))) {
      TopicReader.readToEnd(consumer, opts.eventsTopic(), opts.timeout(), events::accept);
      TopicReader.readToEnd(consumer, opts.stateTopic(), opts.timeout(), table::accept);
    }
    List<String> lines = table.lines();
    if (opts.tableOut() != null) {
      Files.write(opts.tableOut(), lines, StandardCharsets.UTF_8);
    }
    Map<String, Object> summary = new LinkedHashMap<>();
    summary.put("consumer", "java");
    summary.put("events", eventSummary(opts, events, eventDecoder));
    summary.put("customers", tableSummary(opts, table, snapshotDecoder, lines));
    ObjectMapper json = new ObjectMapper()
        .enable(SerializationFeature.INDENT_OUTPUT)
        .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);
    System.out.println(json.writeValueAsString(summary));
    return events.errors + table.errors == 0 ? 0 : 1;
  }

  private static Map<String, Object> eventSummary(Options opts, EventStats e, WireDecoder d) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("topic", opts.eventsTopic());
    m.put("records", e.records);
    m.put("by_type", e.byType);
    m.put("distinct_event_ids", e.distinct());
    m.put("duplicates_dropped", e.duplicates);
    m.put("decode_errors", e.errors);
    m.put("writer_schema_ids", d.schemaIds());
    m.put("event_ids_sha256", e.idsDigest());
    return m;
  }

  private static Map<String, Object> tableSummary(
      Options opts, CustomerTable t, WireDecoder d, List<String> lines) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("topic", opts.stateTopic());
    m.put("records", t.records);
    m.put("tombstones", t.tombstones);
    m.put("count", t.rows.size());
    m.put("decode_errors", t.errors);
    m.put("writer_schema_ids", d.schemaIds());
    m.put("table_sha256", Digest.sha256Lines(lines));
    return m;
  }

  private static Properties consumerConfig(Options opts) {
    Properties p = new Properties();
    p.putAll(opts.extraConsumerConfig());
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opts.bootstrapServers());
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, "tanma-java-consumer");
    // Only committed transactions are the stream.
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    // Partitions are assigned by hand and read from the beginning; no group, no offsets committed.
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    return p;
  }

  /** A reader schema shipped in the jar (copied from the repository's schemas/ at build). */
  private static Schema readerSchema(String file) throws IOException {
    try (InputStream in = ConsumerMain.class.getResourceAsStream("/schemas/" + file)) {
      if (in == null) {
        throw new IOException("reader schema schemas/" + file + " is not in the jar");
      }
      return new Schema.Parser().parse(in);
    }
  }
}
