//! Windows: named shared memory as named file mappings backed by the paging file
//! (`CreateFileMappingW`, `OpenFileMappingW`, `MapViewOfFile`). Windows frees a mapping when its
//! last handle and view are gone, so there is nothing to unlink and no resource tracker (CPython
//! relies on the same).

use std::io;
use std::ptr::NonNull;

use crate::sys::ShmMapping;

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, UnmapViewOfFile,
    VirtualQuery,
};

/// The prefix of generated segment names (CPython's `wnsm_` on Windows).
pub(crate) const SHM_NAME_PREFIX: &str = "wnsm_";

/// What a mapping keeps open while it lives: the mapping's handle. Windows keeps a mapping's
/// name while any view exists, but Wine drops the name with the last handle, so we hold one
/// (CPython closes it at once).
pub(crate) type ShmKeep = Handle;

/// Unmaps a view made by [`map_view`].
///
/// # Safety
/// `ptr` must be such a view, owned by the caller and no longer borrowed.
pub(crate) unsafe fn shm_unmap(ptr: NonNull<u8>, _len: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: ptr.as_ptr().cast(),
        })
    };
}

fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(Some(0)).collect()
}

/// Closes a handle when dropped.
#[derive(Debug)]
pub(crate) struct Handle(HANDLE);

impl From<Handle> for std::os::windows::io::OwnedHandle {
    fn from(h: Handle) -> Self {
        let raw = h.0;
        std::mem::forget(h);
        // SAFETY: `raw` is a handle we own (a `Handle`'s), handed over whole: the `Handle` was
        // forgotten, so nothing else closes it.
        unsafe { std::os::windows::io::FromRawHandle::from_raw_handle(raw) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle we opened and own.
        unsafe { CloseHandle(self.0) };
    }
}

/// Maps all of `mapping`; `len` is the size to report, or `None` to ask the memory manager (the
/// size rounded up to whole pages, as CPython reports it).
fn map_view(mapping: Handle, len: Option<usize>) -> io::Result<ShmMapping> {
    // SAFETY: mapping a view of a mapping handle we hold; zero length maps all of it.
    let view = unsafe { MapViewOfFile(mapping.0, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0) };
    let ptr = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
    // Owned from here: unmapped on every way out.
    let mapped = ShmMapping::new(ptr, 0, mapping);
    let len = match len {
        Some(len) => len,
        None => {
            // SAFETY: querying our own view into a zeroed, correctly sized buffer.
            let info = unsafe {
                let mut info: MEMORY_BASIC_INFORMATION = std::mem::zeroed();
                let n = VirtualQuery(
                    ptr.as_ptr().cast(),
                    &mut info,
                    size_of::<MEMORY_BASIC_INFORMATION>(),
                );
                if n == 0 {
                    return Err(io::Error::last_os_error());
                }
                info
            };
            info.RegionSize
        }
    };
    Ok(mapped.with_len(len))
}

/// A new zero-filled mapping of `size` bytes backed by the paging file, unnamed (`None`) or
/// named; with a name, whether a mapping of that name existed already (the handle is then to
/// it). Also `Region`'s memory.
pub(super) fn create_mapping(size: u64, name: Option<&str>) -> io::Result<(Handle, bool)> {
    let w = name.map(wide);
    // SAFETY: a paging-file-backed mapping, no security attributes, with no name or a
    // NUL-terminated one that lives across the call.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            w.as_ref().map_or(std::ptr::null(), |w| w.as_ptr()),
        )
    };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reading the calling thread's last error right after the call.
    let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    Ok((Handle(h), existed))
}

/// Creates mapping `name` (it must not exist) of `size` bytes, zero-filled, and maps it.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<ShmMapping> {
    let (h, existed) = create_mapping(size as u64, Some(name))?;
    if existed {
        return Err(io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32));
    }
    map_view(h, Some(size))
}

/// Opens existing mapping `name` and maps all of it.
pub(crate) fn shm_attach(name: &str) -> io::Result<ShmMapping> {
    let w = wide(name);
    // SAFETY: opening a mapping by a NUL-terminated name, not inheritable.
    let h = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, w.as_ptr()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    map_view(Handle(h), None)
}

/// Windows has nothing to unlink: a mapping ends with its last handle and view.
pub(crate) fn shm_unlink(_name: &str) -> io::Result<()> {
    Ok(())
}

/// No resource tracker on Windows.
pub(crate) fn shm_track(_name: &str) -> io::Result<()> {
    Ok(())
}

/// No resource tracker on Windows.
pub(crate) fn shm_untrack(_name: &str) -> io::Result<()> {
    Ok(())
}

/// No resource tracker on Windows.
pub(crate) fn tracker_process() -> Option<(u32, i32)> {
    None
}

/// No resource tracker on Windows: nothing to stop at exit.
pub(crate) fn stop_tracker() {}

/// No resource tracker on Windows: nothing to start.
pub(crate) fn ensure_tracker() -> io::Result<()> {
    Ok(())
}
