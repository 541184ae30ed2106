//! Queues between processes (being built).
