//! Kafka writes: the transactional producer and topic management.
