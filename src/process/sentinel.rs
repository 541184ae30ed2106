//! A process's sentinel: a handle that becomes ready when it ends (Python's `Process.sentinel`).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;

/// A waitable handle that becomes ready when a process ends (see [`Process::sentinel`](crate::Process::sentinel)).
#[derive(Debug, Clone)]
pub struct Sentinel(pub(super) Arc<sys::OwnedWaitHandle>);

impl Sentinel {
    /// Waits until the process ends.
    ///
    /// # Errors
    /// [`Error::Io`] if the OS wait fails.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits until the process ends or `timeout` passes; true if it ended.
    ///
    /// # Errors
    /// [`Error::Io`] if the OS wait fails.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<bool> {
        let r = sys::wait_readable(&[sys::borrow_handle(&self.0)], timeout)
            .map_err(|e| Error::io("waiting on a sentinel", e))?;
        Ok(r[0])
    }

    pub(crate) fn handle(&self) -> sys::WaitHandle<'_> {
        sys::borrow_handle(&self.0)
    }

    fn os_handle(&self) -> Option<sys::WaitHandle<'_>> {
        Some(self.handle())
    }
}

// A reactor can wait on it: a pidfd on Linux, a kqueue on macOS (each readable when the process
// ends), the process handle on Windows.
sys::impl_os_handle!(Sentinel, os_handle);
