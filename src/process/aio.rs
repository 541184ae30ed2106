//! [`Process::join_async`] (cargo feature `tokio`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::record::Look;
use super::{Process, Shared};
use crate::error::{Error, Result};
use crate::sys;

impl Process {
    /// [`join`](Process::join) as a future (cargo feature `tokio`; beyond Python): resolves
    /// when the child has ended and been reaped, or when `timeout` passes (`None`: no limit),
    /// without error on timeout, as `join` does.
    ///
    /// No thread waits: the future registers the child's sentinel with tokio's reactor (a
    /// pidfd on Linux, a kqueue watching the pid on macOS, both readable when the child
    /// ends), and the channel on which the child reports how its target ended, then reaps the
    /// child as `join` does. On Windows the process handle and the channel's read event are
    /// waited on by the OS thread pool's shared wait threads (`RegisterWaitForSingleObject`),
    /// which wake the future at the child's exit. It needs a tokio
    /// runtime with I/O and the timer enabled (`Builder::enable_all`). The future owns what it
    /// needs (`'static`, `Send`): it can be spawned.
    ///
    /// **Cancel safety**: dropping the future before it resolves only stops waiting; the child
    /// is untouched and a later `join`, `join_async` or `is_alive` reaps it.
    ///
    /// ```standalone_crate
    /// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    ///
    /// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main`
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let mut p = multiprocess::Process::new(nap, (10,));
    /// p.start()?;
    /// rt.block_on(p.join_async(None))?;
    /// assert_eq!(p.exitcode()?, Some(0));
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`join`](Process::join); [`Error::Io`] outside a tokio runtime.
    pub fn join_async(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let foreign = shared.creator != sys::pid();
        async move {
            if foreign {
                shared.check_open()?;
                return Err(Error::state("can only join a child process"));
            }
            let ended = match timeout {
                None => wait_exit(&shared).await?,
                Some(t) => match tokio::time::timeout(t, wait_exit(&shared)).await {
                    Ok(ended) => ended?,
                    // One last look, as `join` takes at its deadline.
                    Err(_) => matches!(shared.look()?, Look::Ended(_)),
                },
            };
            if ended {
                super::forget_child(&shared);
            }
            Ok(())
        }
    }
}

/// Waits, through the reactor, until the child has ended and is reaped (always `true`).
async fn wait_exit(shared: &Shared) -> Result<bool> {
    loop {
        if let Look::Ended(_) = shared.look()? {
            return Ok(true);
        }
        // None: it ended since the look, which the next one tells.
        let Some((sentinel, channel)) = shared.waitables()? else {
            continue;
        };
        let mut handles = vec![sys::borrow_handle(&sentinel)];
        if let Some(c) = &channel {
            handles.push(sys::channel_handle(c));
        }
        sys::readable_async(&handles)
            .await
            .map_err(|e| Error::io("waiting for a child", e))?;
    }
}
