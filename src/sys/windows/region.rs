//! Windows: anonymous shared memory (a pagefile-backed file mapping) plus one kernel semaphore
//! per region for sleeping. Windows has no cross-process address wait (`WaitOnAddress` is
//! per-process), so a futex is emulated: sleepers count themselves in a header word and wait on
//! the semaphore; a wake releases one token per counted sleeper (every sleeper re-checks its own
//! word, so sharing one semaphore between the words of a region loses no wake-up).

use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
use windows_sys::Win32::System::Memory::{
    FILE_MAP_ALL_ACCESS, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, UnmapViewOfFile,
};
use windows_sys::Win32::System::Threading::{
    CreateSemaphoreW, OpenProcess, PROCESS_SYNCHRONIZE, ReleaseSemaphore, WaitForSingleObject,
};

use super::{INFINITE_MS, owned};

/// Bytes before the caller's part of the mapping: the sleeper count, then the length (64 bits
/// in two words).
const HEADER: usize = 64;

/// A shared, zero-filled region; stays mapped while the value lives.
#[derive(Debug)]
pub(crate) struct Region {
    view: *mut std::ffi::c_void,
    len: usize,
    mapping: OwnedHandle,
    wakeup: OwnedHandle,
}

// SAFETY: the view is shared memory accessed only through atomics and caller-synchronised
// copies; the handles are process-wide kernel objects usable from any thread.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` hands out no unsynchronised interior state.
unsafe impl Sync for Region {}

impl Region {
    /// A new region of `len` bytes.
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        let total = (HEADER + len.max(1)) as u64;
        let mapping = OwnedHandle::from(super::shm::create_mapping(total, None)?.0);
        // SAFETY: an unnamed semaphore, initially 0, no security attributes.
        let wakeup =
            owned(unsafe { CreateSemaphoreW(std::ptr::null(), 0, i32::MAX, std::ptr::null()) })?;
        let mut region = Self::map(mapping, wakeup)?;
        region.header(1).store(len as u32, Ordering::Relaxed);
        region
            .header(2)
            .store((len as u64 >> 32) as u32, Ordering::Relaxed);
        region.len = len;
        Ok(region)
    }

    fn map(mapping: OwnedHandle, wakeup: OwnedHandle) -> io::Result<Region> {
        // SAFETY: maps the whole of a live mapping handle, read-write.
        let view = unsafe { MapViewOfFile(mapping.as_raw_handle(), FILE_MAP_ALL_ACCESS, 0, 0, 0) };
        if view.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut region = Region {
            view: view.Value,
            len: 0,
            mapping,
            wakeup,
        };
        let low = region.header(1).load(Ordering::Relaxed) as u64;
        let high = region.header(2).load(Ordering::Relaxed) as u64;
        region.len = usize::try_from(high << 32 | low)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "region too large"))?;
        Ok(region)
    }

    fn header(&self, index: usize) -> &AtomicU32 {
        // SAFETY: the view is page-aligned and at least HEADER bytes long, so words 0..16 are
        // in bounds and aligned; shared memory is only accessed atomically here.
        unsafe { &*(self.view as *const AtomicU32).add(index) }
    }

    fn sleepers(&self) -> &AtomicU32 {
        self.header(0)
    }

    /// The region's first byte (after the header).
    pub(crate) fn base(&self) -> *mut u8 {
        // SAFETY: the mapping is HEADER + len bytes long.
        unsafe { (self.view as *mut u8).add(HEADER) }
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps its handles: the wake-up semaphore is needed by every wait (Unix closes its
    /// descriptor here).
    pub(crate) fn close_handles(&self) {}

    /// Copies of the handles that let another process map the same memory.
    pub(crate) fn handles(&self) -> io::Result<Vec<OwnedHandle>> {
        Ok(vec![self.mapping.try_clone()?, self.wakeup.try_clone()?])
    }

    /// Maps a region from handles made by [`Region::handles`] in another process.
    pub(crate) fn from_handles(handles: Vec<OwnedHandle>) -> io::Result<Region> {
        let [mapping, wakeup]: [OwnedHandle; 2] = handles.try_into().map_err(|h: Vec<_>| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a shared region travels as 2 handles, not {}", h.len()),
            )
        })?;
        Self::map(mapping, wakeup)
    }

    /// Sleeps while `*word == expected`, at most `timeout`; `false` only when it timed out.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        self.sleepers().fetch_add(1, Ordering::SeqCst);
        if word.load(Ordering::SeqCst) != expected {
            self.sleepers().fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        let ms = timeout.map_or(INFINITE_MS, |d| {
            d.as_nanos()
                .div_ceil(1_000_000)
                .min(INFINITE_MS as u128 - 1) as u32
        });
        // SAFETY: a live semaphore handle.
        let r = unsafe { WaitForSingleObject(self.wakeup.as_raw_handle(), ms) };
        self.sleepers().fetch_sub(1, Ordering::SeqCst);
        r != WAIT_TIMEOUT
    }

    /// Wakes the sleepers of this region (all of them: they share one semaphore).
    pub(crate) fn wake(&self, _word: &AtomicU32, _n: u32) {
        let sleepers = self.sleepers().load(Ordering::SeqCst);
        if sleepers > 0 {
            // SAFETY: a live semaphore handle; a count above the maximum fails harmlessly.
            unsafe {
                ReleaseSemaphore(
                    self.wakeup.as_raw_handle(),
                    sleepers.min(i32::MAX as u32) as i32,
                    std::ptr::null_mut(),
                )
            };
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the view was mapped by us and nothing borrows it past `self`.
        unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.view }) };
    }
}

/// Whether process `pid` is running.
pub(crate) fn process_alive(pid: u32) -> bool {
    // SAFETY: OpenProcess with a plain access mask; the handle is closed below.
    let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if h.is_null() {
        // No such process (or one we may not open, which then exists).
        return io::Error::last_os_error().raw_os_error() == Some(5);
    }
    // SAFETY: a live process handle, closed right after.
    let alive = unsafe { WaitForSingleObject(h, 0) } == WAIT_TIMEOUT;
    // SAFETY: closing the handle we opened.
    unsafe { CloseHandle(h) };
    alive
}

/// Large messages stay in the stream on Windows for now. `ReadProcessMemory` /
/// `WriteProcessMemory` would copy between processes as `process_vm_readv`/`writev` do on
/// Linux, but the only Windows here is Wine, whose server aborts a process copying large
/// blocks into another one ("partial write"): the path cannot be tested, so it is off.
pub(crate) const CROSS_PROCESS_COPY: bool = false;

/// Unsupported (see [`CROSS_PROCESS_COPY`]).
pub(crate) fn copy_from_process(_pid: u32, _from: usize, _to: &mut [u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Unsupported (see [`CROSS_PROCESS_COPY`]).
pub(crate) fn copy_to_process(_pid: u32, _from: &[u8], _to: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// This process's id.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}
