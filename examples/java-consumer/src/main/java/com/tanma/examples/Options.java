package com.tanma.examples;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;

/**
 * Command-line options, each with an environment fallback (the same variable names as the
 * connector's own overrides, so one environment serves both).
 */
record Options(
    String bootstrapServers,
    String registryUrl,
    String eventsTopic,
    String stateTopic,
    Properties extraConsumerConfig,
    Path tableOut,
    Duration timeout) {

  static final String USAGE =
      """
      usage: java -jar tanma-java-consumer.jar [options]
        --bootstrap-servers HOSTS   env KAFKA_BOOTSTRAP_SERVERS   (default 127.0.0.1:9092)
        --registry-url URL          env SCHEMA_REGISTRY_URL       (required; Confluent-compatible API)
        --events-topic NAME         env TANMA_TOPICS__EVENTS      (default tanma.customer.events)
        --state-topic NAME          env TANMA_TOPICS__STATE       (default tanma.customer.state)
        --consumer-config FILE      extra client properties (security.protocol, sasl.*, ssl.*)
        --table-out FILE            write the customer table, one "id<TAB>revision<TAB>fingerprint" line each
        --timeout-secs N            give up reading a topic to its end after N seconds (default 120)
      Reads both topics to their end (read_committed) and prints a JSON summary on stdout.
      Exit codes: 0 ok, 1 a record could not be decoded or a topic not read, 2 bad arguments.
      """;

  /** Thrown for bad arguments; the message is printed with the usage. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  static Options parse(String[] args, Map<String, String> env) throws UsageException {
    String bootstrap = env.getOrDefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
    String registry = env.get("SCHEMA_REGISTRY_URL");
    String events = env.getOrDefault("TANMA_TOPICS__EVENTS", "tanma.customer.events");
    String state = env.getOrDefault("TANMA_TOPICS__STATE", "tanma.customer.state");
    Properties extra = new Properties();
    Path tableOut = null;
    long timeoutSecs = 120;
    for (int i = 0; i < args.length; i++) {
      String flag = args[i];
      if (flag.equals("-h") || flag.equals("--help")) {
        throw new UsageException("");
      }
      if (i + 1 >= args.length) {
        throw new UsageException("missing value after " + flag);
      }
      String value = args[++i];
      switch (flag) {
        case "--bootstrap-servers" -> bootstrap = value;
        case "--registry-url" -> registry = value;
        case "--events-topic" -> events = value;
        case "--state-topic" -> state = value;
        case "--consumer-config" -> extra = loadProperties(Path.of(value));
        case "--table-out" -> tableOut = Path.of(value);
        case "--timeout-secs" -> timeoutSecs = parsePositive(flag, value);
        default -> throw new UsageException("unknown option " + flag);
      }
    }
    if (registry == null || registry.isBlank()) {
      throw new UsageException("no schema registry: pass --registry-url or set SCHEMA_REGISTRY_URL");
    }
    return new Options(
        bootstrap, registry, events, state, extra, tableOut, Duration.ofSeconds(timeoutSecs));
  }

  private static long parsePositive(String flag, String value) throws UsageException {
    try {
      long n = Long.parseLong(value);
      if (n > 0) {
        return n;
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new UsageException(flag + ": expected a positive number, got " + value);
  }

  private static Properties loadProperties(Path file) throws UsageException {
    Properties p = new Properties();
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      p.load(r);
    } catch (IOException e) {
      throw new UsageException("--consumer-config " + file + ": " + e.getMessage());
    }
    return p;
  }
}
