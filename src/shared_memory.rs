//! Named shared memory: Python's `multiprocessing.shared_memory.SharedMemory` (being built).
