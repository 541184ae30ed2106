//! [`TaskOptions`]: what one submission may ask beyond its function and arguments.

use std::time::Duration;

use super::result::{Done, Outcome};
use crate::error::{Error, Result};

/// Options of one submission: callbacks, a time limit, and for map jobs the chunk size.
pub struct TaskOptions<R> {
    pub(super) timeout: Option<Duration>,
    pub(super) chunksize: Option<usize>,
    callback: Option<Box<dyn FnOnce(R) + Send>>,
    error_callback: Option<Box<dyn FnOnce(Error) + Send>>,
}

impl<R> Default for TaskOptions<R> {
    fn default() -> Self {
        TaskOptions {
            timeout: None,
            chunksize: None,
            callback: None,
            error_callback: None,
        }
    }
}

impl<R> std::fmt::Debug for TaskOptions<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskOptions")
            .field("timeout", &self.timeout)
            .field("chunksize", &self.chunksize)
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .finish()
    }
}

impl<R> TaskOptions<R> {
    /// No callbacks, the pool's time limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A time limit for each task of this submission (overrides the pool's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Items per task of a map job (`map_async_with`, `starmap_async_with`; Python's
    /// `chunksize`); the default is ceil(n / (4 × workers)). Single-task submissions ignore it.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Called with the value once the job succeeds, on a pool thread (Python's `callback`).
    /// A panic in it is reported on stderr and contained.
    pub fn callback(mut self, f: impl FnOnce(R) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Called with the error once the job fails (Python's `error_callback`).
    pub fn error_callback(mut self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(f));
        self
    }
}

impl<R: 'static> TaskOptions<R> {
    /// The job's completion hook: decodes the outcomes and calls exactly one callback.
    pub(super) fn into_done(self, decode: fn(&[&Outcome]) -> Result<R>) -> Option<Done> {
        if self.callback.is_none() && self.error_callback.is_none() {
            return None;
        }
        let (callback, error_callback) = (self.callback, self.error_callback);
        Some(Box::new(move |outcomes: &[&Outcome]| {
            match decode(outcomes) {
                Ok(v) => {
                    if let Some(cb) = callback {
                        cb(v)
                    }
                }
                Err(e) => {
                    if let Some(cb) = error_callback {
                        cb(e)
                    }
                }
            }
        }))
    }
}
