//! What Windows has no use for: it has no fork, so nothing prepares for one, and a forked
//! child's chores never run.

use std::io;

use super::{Channel, OwnedHandle, ProcHandle, WaitHandle};

/// A channel's number for a forked child to let go of: none (no fork here).
pub(crate) fn channel_number(_channel: &Channel) -> i32 {
    -1
}

/// Never called with a number (no fork here).
pub(crate) fn release_inherited(_number: i32) {}

/// There is no fork on Windows: nothing to prepare.
pub(crate) fn prepare_null() {}

/// Why nothing forks here.
fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the fork start method does not exist on Windows; use spawn",
    ))
}

/// There is no fork on Windows.
pub(crate) fn fork(_child: impl FnOnce()) -> io::Result<ProcHandle> {
    unsupported()
}

/// There is no fork server here.
pub(crate) fn status_pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    unsupported()
}

/// There is no fork server here: nothing to write.
pub(crate) fn write_status(_status: OwnedHandle, _code: i32) {}

/// There is no fork here.
pub(crate) fn fork_unwatched(_child: impl FnOnce()) -> io::Result<u32> {
    unsupported()
}

/// The fork server's reaper: never made (there is no fork server here).
pub(crate) enum Reaper {}

impl Reaper {
    /// Fails: there is no fork server here.
    pub(crate) fn install() -> io::Result<Reaper> {
        unsupported()
    }

    /// Never called (no reaper exists).
    pub(crate) fn handle(&self) -> WaitHandle<'_> {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn reap(&self, _each: impl FnMut(u32, i32)) {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn keep_high(&self, _handle: OwnedHandle) -> OwnedHandle {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn kept_high(&self, _fd: WaitHandle<'_>) -> bool {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn release_in_child<'a>(&self, _keep: impl Iterator<Item = WaitHandle<'a>>) -> bool {
        match *self {}
    }
}

/// Never called (no fork here).
pub(crate) fn close_abandoned(_handle: WaitHandle<'_>) {}
