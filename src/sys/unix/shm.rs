//! Unix: named shared-memory segments (`shm_open`) (being built).
