//! Python's `multiprocessing.resource_tracker`: the helper process that unlinks the
//! shared-memory segments a process tree leaves behind (see the [module docs](super) for when
//! it runs and what it says).
//!
//! [`SharedMemory::create`](super::SharedMemory::create) and
//! [`attach`](super::SharedMemory::attach) register their segment themselves; these functions
//! are for a segment made or opened otherwise (`create_untracked`, another library, CPython),
//! or to let go of one that must outlive the tree. Only Python's `"shared_memory"` resource type
//! is kept; its names are accepted with or without CPython's leading `/`.
//!
//! On Windows a segment ends with its last handle, so there is no tracker: [`ensure_running`],
//! [`register`] and [`unregister`] do nothing and succeed, and [`pid`]/[`getfd`] are `None`.
//!
//! ```
//! use multiprocess::resource_tracker;
//! use multiprocess::shared_memory::SharedMemory;
//! let shm = SharedMemory::create_untracked(None, 64)?;
//! // From here the tracker unlinks it if this process tree ends without doing so.
//! resource_tracker::register(shm.name(), "shared_memory")?;
//! if cfg!(unix) {
//!     assert!(resource_tracker::pid().is_some());
//! }
//! shm.unlink()?; // unlinks and unregisters
//! # Ok::<(), multiprocess::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::sys;

/// The one resource type the tracker keeps (Python's `"shared_memory"`).
pub const SHARED_MEMORY: &str = "shared_memory";

/// `resource_tracker.ensure_running()`: makes sure this process has its tree's tracker
/// (inherited from its parent, or started now).
///
/// # Errors
/// [`Error::Io`] if the tracker cannot be started.
pub fn ensure_running() -> Result<()> {
    sys::ensure_tracker().map_err(|e| Error::io("starting the resource tracker", e))
}

/// `resource_tracker.register(name, rtype)`: the tracker unlinks segment `name` when every
/// process of this tree has ended, unless it is unregistered first (starting the tracker if
/// needed). Registering a name twice registers it once.
///
/// # Errors
/// [`Error::InvalidArgument`] for a resource type other than `"shared_memory"` or an invalid
/// name; [`Error::Io`] if the tracker cannot be started or told.
pub fn register(name: &str, rtype: &str) -> Result<()> {
    let name = checked(name, rtype)?;
    sys::shm_track(name)
        .map_err(|e| Error::io(format!("registering {name:?} with the resource tracker"), e))
}

/// `resource_tracker.unregister(name, rtype)`: the tracker forgets segment `name` (which then
/// survives the tree unless unlinked). Unregistering a name not registered does nothing.
///
/// # Errors
/// As [`register`].
pub fn unregister(name: &str, rtype: &str) -> Result<()> {
    let name = checked(name, rtype)?;
    sys::shm_untrack(name).map_err(|e| {
        Error::io(
            format!("unregistering {name:?} from the resource tracker"),
            e,
        )
    })
}

/// The tracker's process id, if this process has a tracker (Python's `_resource_tracker._pid`);
/// `None` before the first segment or [`ensure_running`], and always on Windows.
pub fn pid() -> Option<u32> {
    sys::tracker_process().map(|(pid, _)| pid)
}

/// `resource_tracker.getfd()`: the descriptor of this process's end of the tracker's pipe, if it
/// has a tracker (`None` on Windows).
pub fn getfd() -> Option<i32> {
    sys::tracker_process().map(|(_, fd)| fd)
}

/// The segment name without CPython's leading `/`, after checking the type and the name.
fn checked<'a>(name: &'a str, rtype: &str) -> Result<&'a str> {
    if rtype != SHARED_MEMORY {
        return Err(Error::InvalidArgument(format!(
            "resource type {rtype:?} is not tracked: only \"shared_memory\" is"
        )));
    }
    let bare = name.strip_prefix('/').unwrap_or(name);
    super::check_name(bare)?;
    Ok(bare)
}
