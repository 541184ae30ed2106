//! Waiting on several objects at once: [`wait`]. (Pipes, `Connection`, `Listener` and `Client`
//! join this module with the pipes-and-queues issue.)

use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{ParentProcess, Sentinel};
use crate::sys;

/// Something [`wait`] can wait on.
pub trait Waitable {
    /// The OS handle that becomes readable when the object is ready.
    #[doc(hidden)]
    fn wait_handle(&self) -> sys::WaitHandle<'_>;
}

impl Waitable for Sentinel {
    fn wait_handle(&self) -> sys::WaitHandle<'_> {
        self.handle()
    }
}

/// Ready when the parent has ended (Python's `parent_process().sentinel`).
impl Waitable for ParentProcess {
    fn wait_handle(&self) -> sys::WaitHandle<'_> {
        self.handle()
    }
}

/// `multiprocessing.connection.wait(object_list, timeout)`: waits until at least one object is
/// ready or `timeout` passes (`None`: no limit; zero: just look), and returns the indices of the
/// ready ones (empty on timeout).
///
/// # Errors
/// [`Error::Io`] if the OS wait fails.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let handles: Vec<_> = objects.iter().map(|o| o.wait_handle()).collect();
    let ready = sys::wait_readable(&handles, timeout).map_err(|e| Error::io("wait()", e))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect())
}
