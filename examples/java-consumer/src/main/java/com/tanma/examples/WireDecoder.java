package com.tanma.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * Decodes the Confluent wire format ({@code 0x00}, a 4-byte big-endian schema id, the Avro
 * binary body): the writer schema is fetched once per id from the registry's Confluent-compatible
 * API ({@code GET /schemas/ids/{id}}) and resolved against the reader schema this consumer was
 * built with. Resolution is what keeps this consumer working when the producer's schema evolves:
 * fields it does not know are skipped, fields the writer lacks take their defaults, and an enum
 * symbol it does not know (a newer event type) reads as the enum's default, {@code UNKNOWN}.
 */
final class WireDecoder {
  private static final ObjectMapper JSON = new ObjectMapper();

  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  private final String registryUrl;
  private final Schema reader;
  private final Map<Long, GenericDatumReader<GenericRecord>> byId = new HashMap<>();
  private BinaryDecoder reuse;

  /** A record that could not be decoded, with the reason. */
  static final class DecodeException extends Exception {
    private static final long serialVersionUID = 1L;

    DecodeException(String message) {
      super(message);
    }
  }

  WireDecoder(String registryUrl, Schema reader) {
    this.registryUrl = registryUrl.replaceAll("/+$", "");
    this.reader = reader;
  }

  /** The writer schema ids seen so far. */
  TreeSet<Long> schemaIds() {
    return new TreeSet<>(byId.keySet());
  }

  GenericRecord decode(byte[] value) throws DecodeException {
    if (value == null || value.length < 5 || value[0] != 0) {
      throw new DecodeException("not in the Confluent wire format (no magic byte 0 + schema id)");
    }
    long id = Integer.toUnsignedLong(ByteBuffer.wrap(value, 1, 4).getInt());
    GenericDatumReader<GenericRecord> datumReader = byId.get(id);
    if (datumReader == null) {
      datumReader = new GenericDatumReader<>(writerSchema(id), reader);
      byId.put(id, datumReader);
    }
    reuse = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, reuse);
    try {
      GenericRecord record = datumReader.read(null, reuse);
      if (!reuse.isEnd()) {
        throw new DecodeException("schema id " + id + ": bytes left after the record");
      }
      return record;
    } catch (IOException | RuntimeException e) {
      throw new DecodeException("schema id " + id + ": " + e);
    }
  }

  /** Fetches writer schema {@code id} and checks that our reader schema can read it. */
  private Schema writerSchema(long id) throws DecodeException {
    String body = fetch(id);
    Schema writer;
    try {
      JsonNode node = JSON.readTree(body);
      JsonNode type = node.path("schemaType");
      if (!type.isMissingNode() && !type.asText().equals("AVRO")) {
        throw new DecodeException("schema id " + id + " is " + type.asText() + ", not AVRO");
      }
      writer = new Schema.Parser().parse(node.path("schema").asText());
    } catch (IOException | RuntimeException e) {
      throw new DecodeException("schema id " + id + ": unreadable registry answer: " + e);
    }
    var compat = SchemaCompatibility.checkReaderWriterCompatibility(reader, writer);
    if (compat.getType() != SchemaCompatibility.SchemaCompatibilityType.COMPATIBLE) {
      throw new DecodeException(
          "schema id " + id + " cannot be read with our reader schema: "
              + compat.getResult().getIncompatibilities());
    }
    return writer;
  }

  private String fetch(long id) throws DecodeException {
    URI uri = URI.create(registryUrl + "/schemas/ids/" + id);
    HttpRequest.Builder req = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10));
    req.header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
    String auth = System.getenv("SCHEMA_REGISTRY_BASIC_AUTH");
    if (auth != null && !auth.isEmpty()) {
      req.header("Authorization", "Basic " + java.util.Base64.getEncoder().encodeToString(
          auth.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
    }
    try {
      HttpResponse<String> resp = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() != 200) {
        throw new DecodeException("GET " + uri + ": HTTP " + resp.statusCode());
      }
      return resp.body();
    } catch (IOException e) {
      throw new DecodeException("GET " + uri + ": " + e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new DecodeException("GET " + uri + ": interrupted");
    }
  }
}
