//! Code addresses that mean the same thing in every process running this executable.
//!
//! A spawned child runs the same executable as its parent, but the loader places it at another
//! address (ASLR). So the parent sends a function's *offset* from [`ANCHOR`], a static of this
//! crate, and the child adds its own anchor address. This is valid only when (a) the function
//! lives in the main executable image, not in a shared library, which [`code_offset`] checks, and
//! (b) both processes run the same build, which the [`identity`] handshake checks.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The function a child calls: decodes the arguments, runs the target, encodes its value.
pub(crate) type Trampoline = fn(&[u8]) -> Result<Vec<u8>>;

/// Code as it travels to another process running this executable: a trampoline's offset in the
/// image and the seal binding it to this build (see this module). A child's target, a pool
/// task, a manager's object of the program's own type: each is found this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Code {
    offset: i64,
    seal: u64,
}

impl Code {
    /// Where `t` is, sealed to this build.
    pub(crate) fn of(t: Trampoline) -> Result<Code> {
        let offset = code_offset(t)?;
        Ok(Code {
            offset,
            seal: seal(offset),
        })
    }

    /// The trampoline, if this process runs the build that sealed it.
    pub(crate) fn resolve(self) -> Result<Trampoline> {
        trampoline_at(self.offset, self.seal)
    }

    /// A code that resolves to nothing: for the supervisor's tests, which never run tasks.
    #[cfg(test)]
    pub(crate) fn dummy() -> Code {
        Code { offset: 0, seal: 0 }
    }
}

/// The base of all offsets. A `static` (not a function) so that it exists exactly once in the
/// image, whatever the codegen units.
static ANCHOR: u8 = 0;

fn anchor() -> usize {
    std::ptr::addr_of!(ANCHOR) as usize
}

/// The offset of `t` from the anchor, or an error if `t` is not in the main executable image
/// (a function in a shared library may be loaded elsewhere, or not at all, in the child).
pub(crate) fn code_offset(t: Trampoline) -> Result<i64> {
    address_offset(t as usize)
}

fn address_offset(addr: usize) -> Result<i64> {
    if !super::os::in_main_image(addr) {
        return Err(Error::InvalidArgument(format!(
            "the target at {addr:#x} is not in the main executable image (a shared library?); \
             a spawned child could not find it. Use the fork start method, or move the target \
             into the executable"
        )));
    }
    Ok(addr as i64 - anchor() as i64)
}

/// A check value binding an offset to this build, so a garbled offset is refused instead of
/// being jumped to.
pub(crate) fn seal(offset: i64) -> u64 {
    fnv1a(&[
        &identity().to_le_bytes(),
        &offset.to_le_bytes(),
        b"multiprocess-trampoline",
    ])
}

/// The trampoline at `offset` in this process.
///
/// # Errors
/// [`Error::Bootstrap`] if `check` is not `seal(offset)` or the address is outside the image.
pub(crate) fn trampoline_at(offset: i64, check: u64) -> Result<Trampoline> {
    let addr = (anchor() as i64).wrapping_add(offset) as usize;
    if check != seal(offset) || !super::os::in_main_image(addr) {
        return Err(Error::Bootstrap(format!(
            "the target offset {offset:#x} does not belong to this executable (garbled message?)"
        )));
    }
    // SAFETY: `seal` proves the offset was computed by `code_offset` in a process running this
    // very build (same identity), from a value of type `Trampoline`; the image is relocated as a
    // whole, so anchor + offset is that same function in this process.
    Ok(unsafe { std::mem::transmute::<usize, Trampoline>(addr) })
}

/// The compile-time check that a target type `F` captures nothing (is zero-sized): naming
/// `NoCapture::<F>::CHECK` fails the build of the instance that names it first, with a message
/// saying what to do. Each public function taking a target names it (see
/// `registry::no_capture!`), so that rustc's note "the above error was encountered while
/// instantiating" points at the user's call, not into this crate.
pub(crate) struct NoCapture<F>(std::marker::PhantomData<F>);

impl<F> NoCapture<F> {
    /// Evaluates to `()` for a zero-sized `F`, fails the build otherwise.
    pub(crate) const CHECK: () = assert!(
        std::mem::size_of::<F>() == 0,
        "a spawn target cannot capture variables (a spawned child re-creates it from its type \
         alone): pass the values as args, or use Process::from_closure with the fork start \
         method"
    );
}

/// Produces the value of a zero-sized callable type: a function item or a closure that captures
/// nothing. Such types have a single value, so no information is lost when a child re-creates it.
pub(crate) fn conjure<F: Copy>() -> F {
    #[allow(clippy::let_unit_value)]
    let () = NoCapture::<F>::CHECK;
    // SAFETY: `F` is zero-sized (checked at compile time), so it has no bytes to initialise.
    // Callers only use it with `F: Fn*` types, which on stable Rust are function items and
    // closures; for those with no captures there is exactly one value and no invariant to break.
    unsafe { std::mem::zeroed() }
}

/// A fingerprint of this build: the linker's build id where the platform records one, plus the
/// layout of this crate's code in the image. Parent and child compare them before any offset is
/// trusted.
pub(crate) fn identity() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        let layout = (identity as fn() -> u64 as usize as i64 - anchor() as i64).to_le_bytes();
        let layout2 = (seal as fn(i64) -> u64 as usize as i64 - anchor() as i64).to_le_bytes();
        let build = super::os::build_id().unwrap_or_default();
        fnv1a(&[
            &build,
            &layout,
            &layout2,
            env!("CARGO_PKG_VERSION").as_bytes(),
        ])
    })
}

/// 64-bit FNV-1a over several byte strings.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(_: &[u8]) -> Result<Vec<u8>> {
        Ok(vec![42])
    }

    #[test]
    fn offsets_round_trip_and_garbage_is_refused() {
        let off = code_offset(sample).unwrap();
        let t = trampoline_at(off, seal(off)).unwrap();
        assert_eq!(t(&[]).unwrap(), vec![42]);
        assert!(trampoline_at(off + 1, seal(off)).is_err());
        assert!(trampoline_at(1 << 40, seal(1 << 40)).is_err());
        assert_eq!(identity(), identity());
    }

    #[cfg(any(all(target_os = "linux", target_env = "gnu"), target_os = "macos"))]
    #[test]
    fn code_outside_the_main_image_is_refused() {
        // getpid lives in the C library, a shared object loaded at its own address.
        let in_libc = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize;
        let e = address_offset(in_libc).unwrap_err();
        assert!(
            e.to_string().contains("not in the main executable image"),
            "{e}"
        );
    }

    #[cfg(windows)]
    #[test]
    fn code_outside_the_main_image_is_refused() {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
        let kernel32: Vec<u16> = "kernel32.dll\0".encode_utf16().collect();
        // SAFETY: looks up an export of kernel32.dll, which every process has loaded.
        let export = unsafe {
            GetProcAddress(
                GetModuleHandleW(kernel32.as_ptr()),
                c"GetCurrentProcessId".as_ptr().cast(),
            )
        };
        let in_kernel32 = export.expect("kernel32 exports GetCurrentProcessId") as usize;
        let e = address_offset(in_kernel32).unwrap_err();
        assert!(
            e.to_string().contains("not in the main executable image"),
            "{e}"
        );
    }

    #[test]
    fn zero_sized_callables_are_conjured() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        fn make<F: Fn(u32) -> u32 + Copy>(_: F) -> F {
            conjure::<F>()
        }
        assert_eq!(make(double)(21), 42);
        assert_eq!(make(|x| x + 1)(41), 42);
    }
}
