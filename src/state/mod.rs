//! The diff state: what the connector believes each customer looks like, restored from the compacted state topic.
