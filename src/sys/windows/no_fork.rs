//! What Windows has no use for: it has no fork, so nothing prepares for one, and a forked
//! child's chores never run.

use std::io;

use super::{Channel, ProcHandle, WaitHandle};

/// A channel's number for a forked child to let go of: none (no fork here).
pub(crate) fn channel_number(_channel: &Channel) -> i32 {
    -1
}

/// Never called with a number (no fork here).
pub(crate) fn release_inherited(_number: i32) {}

/// There is no fork on Windows: nothing to prepare.
pub(crate) fn prepare_null() {}

/// There is no fork on Windows.
pub(crate) fn fork(_child: impl FnOnce()) -> io::Result<ProcHandle> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the fork start method does not exist on Windows; use spawn",
    ))
}

/// Never called (no fork here).
pub(crate) fn close_abandoned(_handle: WaitHandle<'_>) {}

impl ProcHandle {
    /// The process handle, borrowed.
    pub(crate) fn sentinel_handle(&self) -> WaitHandle<'_> {
        super::borrow_handle(&self.process)
    }
}
