//! The main image on Windows: which module an address belongs to (`GetModuleHandleExW`), the
//! executable's path (`GetModuleFileNameW`), and a fingerprint of its PE headers.

use std::ffi::OsString;
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::path::PathBuf;

use windows_sys::Win32::Foundation::HMODULE;
use windows_sys::Win32::System::LibraryLoader::{
    GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    GetModuleFileNameW, GetModuleHandleExW, GetModuleHandleW,
};

fn main_module() -> HMODULE {
    // SAFETY: a null name asks for the executable's own module; nothing is loaded.
    unsafe { GetModuleHandleW(std::ptr::null()) }
}

/// The executable to re-run.
pub(crate) fn exe_path() -> io::Result<PathBuf> {
    let mut buf = vec![0u16; 512];
    loop {
        // SAFETY: writes at most `buf.len()` UTF-16 units into `buf`.
        let n =
            unsafe { GetModuleFileNameW(std::ptr::null_mut(), buf.as_mut_ptr(), buf.len() as u32) }
                as usize;
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        if n < buf.len() {
            return Ok(PathBuf::from(OsString::from_wide(&buf[..n])));
        }
        // Truncated: try a larger buffer.
        buf.resize(buf.len() * 2, 0);
    }
}

/// True if `addr` lies in the executable's module (not in a DLL).
pub(crate) fn in_main_image(addr: usize) -> bool {
    let mut module: HMODULE = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the "name" is an address inside a module; the reference count
    // is left alone, so nothing needs releasing.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            addr as *const u16,
            &mut module,
        )
    };
    ok != 0 && !module.is_null() && module == main_module()
}

/// A fingerprint of the executable from its PE headers: the COFF file header (machine, section
/// count, link time stamp) and the optional header's code sizes, entry point, image size and
/// checksum. (The layout fingerprint in `sys::image` adds to it.)
pub(crate) fn build_id() -> Option<Vec<u8>> {
    let base = main_module() as *const u8;
    if base.is_null() {
        return None;
    }
    // SAFETY: the module handle of the executable is the address of its mapped image, which
    // starts with the DOS header (e_lfanew at 0x3c) and holds the NT headers at e_lfanew; we
    // read only within the fixed-size headers, after checking both signatures.
    unsafe {
        if std::slice::from_raw_parts(base, 2) != b"MZ" {
            return None;
        }
        let lfanew = u32::from_le_bytes(
            std::slice::from_raw_parts(base.add(0x3c), 4)
                .try_into()
                .ok()?,
        );
        let nt = base.add(lfanew as usize);
        if std::slice::from_raw_parts(nt, 4) != b"PE\0\0" {
            return None;
        }
        let coff = std::slice::from_raw_parts(nt.add(4), 20);
        let optional = std::slice::from_raw_parts(nt.add(24), 68);
        let mut id = coff.to_vec();
        id.extend_from_slice(&optional[4..20]); // SizeOfCode .. AddressOfEntryPoint
        id.extend_from_slice(&optional[56..60]); // SizeOfImage
        id.extend_from_slice(&optional[64..68]); // CheckSum
        Some(id)
    }
}
