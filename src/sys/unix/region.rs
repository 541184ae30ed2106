//! Unix: anonymous shared memory that travels as one descriptor (a memfd on Linux, an unlinked
//! POSIX shared-memory object on macOS), and futex-style waits on words inside it.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::OwnedHandle;
use super::os;

/// A shared, zero-filled, page-aligned memory region; stays mapped while the value lives.
#[derive(Debug)]
pub(crate) struct Region {
    map: memmap2::MmapRaw,
    /// `None` once [`Region::close_handles`] let it go (the mapping stays).
    file: Mutex<Option<File>>,
}

impl Region {
    /// A new region of `len` bytes (at least one page is mapped).
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        let file = File::from(os::anonymous_memory()?);
        file.set_len(len.max(1) as u64)?;
        Self::map(file)
    }

    fn map(file: File) -> io::Result<Region> {
        let map = memmap2::MmapOptions::new().map_raw(&file)?;
        Ok(Region {
            map,
            file: Mutex::new(Some(file)),
        })
    }

    /// The region's first byte.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Copies of the handles that let another process map the same memory.
    pub(crate) fn handles(&self) -> io::Result<Vec<OwnedHandle>> {
        let file = super::super::lock(&self.file);
        let file = file.as_ref().ok_or_else(|| {
            io::Error::other("this shared region's descriptor was closed: it cannot travel")
        })?;
        Ok(vec![OwnedFd::from(file.try_clone()?)])
    }

    /// Closes the region's descriptor, keeping the memory mapped: a region that will never
    /// travel again then costs no descriptor.
    pub(crate) fn close_handles(&self) {
        *super::super::lock(&self.file) = None;
    }

    /// Maps a region from handles made by [`Region::handles`] in another process.
    pub(crate) fn from_handles(handles: Vec<OwnedHandle>) -> io::Result<Region> {
        let [fd]: [OwnedHandle; 1] = handles.try_into().map_err(|h: Vec<_>| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a shared region travels as 1 handle, not {}", h.len()),
            )
        })?;
        Self::map(File::from(fd))
    }

    /// Sleeps while `*word == expected`, at most `timeout`; `false` only when it timed out.
    /// `word` must lie in this region.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        os::futex_wait(word, expected, timeout)
    }

    /// Wakes up to `n` sleepers on `word` (`u32::MAX`: all).
    pub(crate) fn wake(&self, word: &AtomicU32, n: u32) {
        os::futex_wake(word, n)
    }
}

/// Whether this OS copies memory straight between processes ([`copy_from_process`]).
pub(crate) const CROSS_PROCESS_COPY: bool = os::CROSS_PROCESS_COPY;

/// Copies `to.len()` bytes at address `from` in process `pid` into `to` (Linux:
/// `process_vm_readv`). Fails if this process may not read that one's memory, or the range is
/// not mapped there.
pub(crate) fn copy_from_process(pid: u32, from: usize, to: &mut [u8]) -> io::Result<()> {
    os::copy_from_process(pid, from, to)
}

/// Copies `from` to address `to` in process `pid` (Linux: `process_vm_writev`). The caller
/// answers for `to..to + from.len()` being memory that process lent for this.
pub(crate) fn copy_to_process(pid: u32, from: &[u8], to: usize) -> io::Result<()> {
    os::copy_to_process(pid, from, to)
}

/// Whether process `pid` is running (a zombie is not).
pub(crate) fn process_alive(pid: u32) -> bool {
    os::process_alive(pid)
}
