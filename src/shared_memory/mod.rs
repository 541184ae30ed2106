//! Named shared memory: Python's `multiprocessing.shared_memory.SharedMemory`.
//!
//! A [`SharedMemory`] is a block of memory with a name. One process creates it, any process that
//! knows the name attaches to it, and all of them see the same bytes. It can also be passed as a
//! [`Process`](crate::Process) argument or sent over a [`Connection`](crate::Connection): it
//! travels by name and the receiver attaches again, as CPython pickles it.
//!
//! ```standalone_crate
//! use multiprocess::{Process, shared_memory::SharedMemory};
//!
//! fn child(name: String) {
//!     let mut shm = SharedMemory::attach(&name).unwrap();
//!     shm.buf_mut()[..5].copy_from_slice(b"hello");
//! }
//!
//! # fn main() -> multiprocess::Result<()> {
//! multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
//! let shm = SharedMemory::create(None, 512)?;
//! let mut p = Process::new(child, (shm.name().to_owned(),));
//! p.start()?;
//! p.join()?;
//! assert_eq!(&shm.buf()[..5], b"hello");
//! shm.unlink()?;
//! # Ok(()) }
//! ```
//!
//! ## Python → Rust
//!
//! | Python `multiprocessing.shared_memory` | `multiprocess::shared_memory` |
//! |---|---|
//! | `SharedMemory(create=True, size=n)` | [`SharedMemory::create(None, n)`](SharedMemory::create) |
//! | `SharedMemory(name, create=True, size=n)` | [`SharedMemory::create(Some(name), n)`](SharedMemory::create) |
//! | `SharedMemory(name)` | [`SharedMemory::attach(name)`](SharedMemory::attach) |
//! | `SharedMemory(..., track=False)` (3.13) | [`SharedMemory::create_untracked`], [`SharedMemory::attach_untracked`] |
//! | `shm.name`, `shm.size` | [`name`](SharedMemory::name), [`size`](SharedMemory::size) |
//! | `shm.buf` (a `memoryview`) | [`buf`](SharedMemory::buf), [`buf_mut`](SharedMemory::buf_mut), [`as_ptr`](SharedMemory::as_ptr) |
//! | `shm.close()`, `shm.unlink()` | [`close`](SharedMemory::close) (also on drop), [`unlink`](SharedMemory::unlink) |
//! | pickling (by name) | `Serialize`/`Deserialize` (by name; the receiver attaches) |
//! | `ShareableList(sequence, name=None)`, `ShareableList(name=n)` | [`ShareableList::new(items, None)`](ShareableList::new), [`ShareableList::attach(n)`](ShareableList::attach) |
//! | `sl[i]`, `sl[i] = v`, `len(sl)`, `sl.count(v)`, `sl.index(v)`, `sl.format`, `sl.shm` | [`get`](ShareableList::get), [`set`](ShareableList::set), [`len`](ShareableList::len), [`count`](ShareableList::count), [`index`](ShareableList::index), [`format`](ShareableList::format), [`shm`](ShareableList::shm) |
//! | `int`, `float`, `bool`, `str`, `bytes`, `None` items | [`Item`]`::{Int, Float, Bool, Str, Bytes, None}` |
//! | `FileExistsError`, `FileNotFoundError` | [`Error::Io`] whose `source.kind()` is `AlreadyExists`, `NotFound` |
//! | `ValueError` (size 0, bad name) | [`Error::InvalidArgument`] |
//!
//! ## Names
//! Generated names are CPython's: `psm_` and 8 random hex digits (`wnsm_` on Windows). On Unix
//! the operating system's name is `/` + [`name`](SharedMemory::name) (Linux shows it as
//! `/dev/shm/<name>`), so segments interoperate with CPython's by name in both directions.
//!
//! ## The resource tracker (Unix)
//! A segment lives until it is unlinked, even after every process using it has ended. As in
//! Python, every segment created or attached with tracking is registered with a *resource
//! tracker*: one helper process per process tree (children started with spawn or fork share
//! their parent's), started on first use. [`unlink`](SharedMemory::unlink) unregisters. When
//! every process of the tree has ended — normally or killed — the tracker unlinks what is still
//! registered and warns on stderr, in CPython's words: `resource_tracker: There appear to be N
//! leaked shared_memory objects to clean up at shutdown`.
//!
//! The catch is CPython's too (gh-82300): a program that *attaches* to a segment owned by an
//! unrelated program gets its own tracker, which unlinks the segment when the attaching program
//! ends. Attach with [`attach_untracked`](SharedMemory::attach_untracked) there (Python 3.13's
//! `track=False`), and create with [`create_untracked`](SharedMemory::create_untracked) a segment
//! meant to outlive its process tree. Processes the tree starts by other means (e.g.
//! `std::process::Command`) inherit the tracker's pipe and count as part of the tree until they
//! end.
//!
//! On Windows a segment ends when its last handle is closed, so there is no tracker and
//! [`unlink`](SharedMemory::unlink) only marks the object (CPython's is a no-op).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys;

pub mod resource_tracker;
mod shareable_list;

pub use shareable_list::{Item, Iter, ShareableList};

/// A named block of shared memory (Python's `multiprocessing.shared_memory.SharedMemory`).
///
/// Other processes attached to the same segment may read and write its bytes at any time:
/// access from several processes must be synchronised, e.g. with a lock or by handing the
/// block over through a pipe, as in Python. See the [module docs](self) for tracking.
///
/// ```standalone_crate
/// use multiprocess::{Process, SharedMemory};
///
/// /// Attaches to the segment by name and writes into it.
/// fn fill(name: String) {
///     let mut shm = SharedMemory::attach(&name).unwrap();
///     shm.buf_mut()[..3].copy_from_slice(&[1, 2, 3]);
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let shm = SharedMemory::create(None, 4096)?;
/// let mut p = Process::new(fill, (shm.name().to_string(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(&shm.buf()[..3], &[1, 2, 3]);
/// shm.unlink()?; // the creator removes the name when done
/// # Ok(()) }
/// ```
pub struct SharedMemory {
    name: String,
    size: usize,
    track: bool,
    mapping: Option<sys::ShmMapping>,
    unlinked: AtomicBool,
}

impl SharedMemory {
    /// Creates a new segment of `size` bytes (zero-filled) and maps it, tracked (see the
    /// [module docs](self)). With `name: None` a fresh name is generated (`psm_` + 8 hex digits),
    /// retried while it collides, as CPython does.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `size` is 0 or the name is invalid (empty, or containing
    /// `/`, a NUL byte or a newline); [`Error::Io`] with `source.kind()` `AlreadyExists` if a
    /// segment of that name exists, or the OS error.
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        Self::create_with(name, size, true)
    }

    /// [`create`](Self::create) without the resource tracker (Python 3.13's `track=False`): the
    /// segment outlives this process tree until someone unlinks it.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_untracked(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        Self::create_with(name, size, false)
    }

    /// Attaches to the existing segment `name` and maps all of it; its size is the segment's
    /// (rounded up to whole pages on macOS and Windows). Tracked, as in Python (see the
    /// [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Io`] with `source.kind()` `NotFound` if there is no such segment;
    /// [`Error::InvalidArgument`] for an invalid name or an empty segment.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        Self::attach_with(name, true)
    }

    /// [`attach`](Self::attach) without the resource tracker (Python 3.13's `track=False`):
    /// the way to use a segment owned by another program without unlinking it when this one
    /// ends.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_untracked(name: &str) -> Result<SharedMemory> {
        Self::attach_with(name, false)
    }

    fn create_with(name: Option<&str>, size: usize, track: bool) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "'size' must be a positive number different from zero".into(),
            ));
        }
        let (name, mapping) = match name {
            Some(name) => {
                check_name(name)?;
                let mapping = sys::shm_create(name, size)
                    .map_err(|e| Error::io(format!("creating shared memory {name:?}"), e))?;
                (name.to_owned(), mapping)
            }
            None => loop {
                let name = random_name()?;
                match sys::shm_create(&name, size) {
                    Ok(mapping) => break (name, mapping),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(Error::io(format!("creating shared memory {name:?}"), e));
                    }
                }
            },
        };
        Self::opened(name, size, mapping, track)
    }

    fn attach_with(name: &str, track: bool) -> Result<SharedMemory> {
        check_name(name)?;
        let mapping = sys::shm_attach(name)
            .map_err(|e| Error::io(format!("attaching to shared memory {name:?}"), e))?;
        if mapping.len() == 0 {
            return Err(Error::InvalidArgument(format!(
                "cannot attach to shared memory {name:?}: it is empty"
            )));
        }
        let size = mapping.len();
        Self::opened(name.to_owned(), size, mapping, track)
    }

    fn opened(
        name: String,
        size: usize,
        mapping: sys::ShmMapping,
        track: bool,
    ) -> Result<SharedMemory> {
        if track {
            sys::shm_track(&name).map_err(|e| {
                Error::io(
                    format!("registering shared memory {name:?} with the resource tracker"),
                    e,
                )
            })?;
        }
        Ok(SharedMemory {
            name,
            size,
            track,
            mapping: Some(mapping),
            unlinked: AtomicBool::new(false),
        })
    }

    /// The segment's name (Python's `name`; on Unix without the leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes: as created, or the segment's size when attached (Python's `size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// True if the segment is registered with the resource tracker (created or attached
    /// without `_untracked`).
    pub fn is_tracked(&self) -> bool {
        self.track
    }

    /// The bytes (Python's `buf`); empty after [`close`](Self::close).
    ///
    /// Other processes may write these bytes while the slice is borrowed: synchronise with them
    /// (a lock, a message), or read through [`as_ptr`](Self::as_ptr) with volatile or atomic
    /// accesses.
    pub fn buf(&self) -> &[u8] {
        match &self.mapping {
            // SAFETY: the mapping is live while `self` is borrowed and spans `len` bytes. Writes
            // by other processes are the documented synchronisation duty of the user.
            Some(m) => unsafe { std::slice::from_raw_parts(m.as_ptr(), m.len()) },
            None => &[],
        }
    }

    /// The bytes, writable (Python's `buf`); empty after [`close`](Self::close).
    ///
    /// Exclusive only within this process: other processes attached to the segment may read
    /// and write concurrently. Synchronise with them, e.g. with a lock or by handing the block
    /// over through a pipe.
    pub fn buf_mut(&mut self) -> &mut [u8] {
        match &self.mapping {
            // SAFETY: the mapping is live while `self` is mutably borrowed, spans `len` bytes,
            // and no other borrow of it exists in this process.
            Some(m) => unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), m.len()) },
            None => &mut [],
        }
    }

    /// The first byte of the mapping, for volatile or atomic access shared with other processes;
    /// null after [`close`](Self::close). Valid for [`size`](Self::size) bytes until then.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping
            .as_ref()
            .map_or(std::ptr::null_mut(), sys::ShmMapping::as_ptr)
    }

    /// True once [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.mapping.is_none()
    }

    /// Unmaps the segment from this process (Python's `close()`); the segment itself lives on
    /// for the others. Idempotent; dropping does the same.
    pub fn close(&mut self) {
        self.mapping = None;
    }

    /// Removes the segment's name, so that it goes away once every process has closed it
    /// (Python's `unlink()`), and unregisters it from the resource tracker. Call it once, in
    /// one process. On Windows the OS removes a segment with its last handle: there this only
    /// marks the object, so that a second call fails as on Unix.
    ///
    /// # Errors
    /// [`Error::Io`] with `source.kind()` `NotFound` if the segment was already unlinked (by
    /// this object, or on Unix by anyone).
    pub fn unlink(&self) -> Result<()> {
        let context = || format!("unlinking shared memory {:?}", self.name);
        if self.unlinked.swap(true, Ordering::SeqCst) {
            return Err(Error::io(
                context(),
                io::Error::new(io::ErrorKind::NotFound, "already unlinked"),
            ));
        }
        if let Err(e) = sys::shm_unlink(&self.name) {
            self.unlinked.store(false, Ordering::SeqCst);
            return Err(Error::io(context(), e));
        }
        if self.track {
            sys::shm_untrack(&self.name).map_err(|e| {
                Error::io(
                    format!(
                        "unregistering shared memory {:?} from the resource tracker",
                        self.name
                    ),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

impl fmt::Debug for SharedMemory {
    /// Python's repr: `SharedMemory('psm_0123abcd', size=512)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedMemory({:?}, size={})", self.name, self.size)
    }
}

/// On the wire: the name and whether to track it.
#[derive(Serialize, Deserialize)]
struct ByName {
    name: String,
    track: bool,
}

impl Serialize for SharedMemory {
    /// By name (and the tracking choice), as CPython pickles it.
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        ByName {
            name: self.name.clone(),
            track: self.track,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    /// Attaches to the named segment (tracked if the sender's was).
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let ByName { name, track } = ByName::deserialize(deserializer)?;
        SharedMemory::attach_with(&name, track).map_err(|e| crate::wire::custom_de(e.to_string()))
    }
}

/// Unlinks segment `name` (unless it is gone already) and unregisters it from the resource
/// tracker, without mapping it: what a `SharedMemoryManager` does with the segments it keeps.
pub(crate) fn unlink_by_name(name: &str) -> Result<()> {
    check_name(name)?;
    match sys::shm_unlink(name) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("unlinking shared memory {name:?}"), e)),
    }
    sys::shm_untrack(name).map_err(|e| {
        Error::io(
            format!("unregistering shared memory {name:?} from the resource tracker"),
            e,
        )
    })
}

/// Rejects names no platform accepts or the tracker's one-line messages could not carry.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\0', '\n']) {
        return Err(Error::InvalidArgument(format!(
            "invalid shared memory name {name:?}: it must be non-empty, without '/', NUL or newline"
        )));
    }
    Ok(())
}

/// `psm_` (`wnsm_` on Windows) and 8 random hex digits, as CPython's `_make_filename`.
fn random_name() -> Result<String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::io(
            "generating a shared memory name",
            io::Error::other(e.to_string()),
        )
    })?;
    Ok(format!(
        "{}{:08x}",
        sys::SHM_NAME_PREFIX,
        u32::from_be_bytes(bytes)
    ))
}

/// The resource tracker's pid and the descriptor this process holds for it, if this process has
/// one: leak checks in tests must not count them. Not part of the API.
#[doc(hidden)]
pub fn resource_tracker_process() -> Option<(u32, i32)> {
    sys::tracker_process()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_cpythons() {
        let n = random_name().unwrap();
        let hex = n.strip_prefix(sys::SHM_NAME_PREFIX).unwrap();
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", "a/b", "a\0b", "a\nb"] {
            assert!(matches!(check_name(bad), Err(Error::InvalidArgument(_))));
        }
        check_name("psm_ok:1").unwrap();
    }
}
