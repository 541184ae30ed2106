//! A shared-memory segment mapped into this process: the part every platform shares. Each
//! platform's `shm` module makes mappings, says what a mapping keeps open while it lives
//! (`ShmKeep`) and how it is unmapped (`shm_unmap`).

use std::ptr::NonNull;

use super::{ShmKeep, shm_unmap};

/// A mapping of a whole shared-memory segment into this process, unmapped on drop.
#[derive(Debug)]
pub(crate) struct ShmMapping {
    ptr: NonNull<u8>,
    len: usize,
    _keep: ShmKeep,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving or sharing the pointer
// between threads is no different from sharing it between processes. Synchronising access to the
// bytes is the user's business (documented on `SharedMemory`).
unsafe impl Send for ShmMapping {}
// SAFETY: see `Send`.
unsafe impl Sync for ShmMapping {}

impl ShmMapping {
    /// Takes over the mapping of `len` bytes at `ptr` (dangling but non-null for an empty
    /// segment), which only this value will unmap, with what must stay open as long.
    #[cfg_attr(
        any(
            multiprocess_stub_platform,
            not(any(target_os = "linux", target_os = "macos", windows))
        ),
        allow(dead_code, reason = "the stub platform maps no segment")
    )]
    pub(crate) fn new(ptr: NonNull<u8>, len: usize, keep: ShmKeep) -> ShmMapping {
        ShmMapping {
            ptr,
            len,
            _keep: keep,
        }
    }

    /// The same mapping, reporting `len` bytes (which must not exceed what is mapped): Windows
    /// learns a view's size after mapping it.
    #[cfg(windows)]
    pub(crate) fn with_len(mut self, len: usize) -> ShmMapping {
        self.len = len;
        self
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for ShmMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping made by the platform's `shm` module and owned
        // by this value alone; nothing borrows it any more (borrows are tied to the owner).
        unsafe { shm_unmap(self.ptr, self.len) };
    }
}
