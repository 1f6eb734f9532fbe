//! Operations: metrics, health and readiness, logging, shutdown.
