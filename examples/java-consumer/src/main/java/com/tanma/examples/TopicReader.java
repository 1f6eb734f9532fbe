package com.tanma.examples;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

/** Reads a topic from the beginning to the end offsets taken when it starts. */
final class TopicReader {
  private TopicReader() {}

  /**
   * Assigns every partition of {@code topic}, seeks to the beginning, captures the end offsets
   * (with {@code isolation.level=read_committed} these are the last stable offsets: nothing of an
   * open transaction) and hands every record to {@code handler} until the position of every
   * partition has reached its end offset. Positions move past transaction markers and aborted
   * records too, so the loop ends even though those are never returned.
   */
  static void readToEnd(
      KafkaConsumer<byte[], byte[]> consumer,
      String topic,
      Duration timeout,
      Consumer<ConsumerRecord<byte[], byte[]>> handler)
      throws TimeoutException {
    Instant deadline = Instant.now().plus(timeout);
    List<PartitionInfo> infos = consumer.partitionsFor(topic, timeout);
    if (infos == null || infos.isEmpty()) {
      throw new IllegalStateException("topic " + topic + " does not exist");
    }
    List<TopicPartition> partitions =
        infos.stream().map(p -> new TopicPartition(topic, p.partition())).toList();
    consumer.assign(partitions);
    consumer.seekToBeginning(partitions);
    Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, timeout);
    while (!reached(consumer, ends)) {
      if (Instant.now().isAfter(deadline)) {
        throw new TimeoutException(
            "topic " + topic + ": end offsets " + ends + " not reached within " + timeout);
      }
      for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
        handler.accept(r);
      }
    }
    consumer.unsubscribe();
  }

  private static boolean reached(
      KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> ends) {
    return ends.entrySet().stream()
        .allMatch(e -> consumer.position(e.getKey()) >= e.getValue());
  }
}
