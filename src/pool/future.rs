//! [`AsyncResult`] as a future: `.await` it (beyond Python).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::AsyncResult;
use crate::error::Result;

/// The future of an [`AsyncResult`] (from `.await`, [`IntoFuture`]), resolving to what
/// [`get`](AsyncResult::get) returns.
///
/// No thread waits: the job wakes the future's task when its last task's outcome is in and
/// its callbacks have run, exactly when it wakes blocking `get`s. It works with any executor
/// (no runtime is needed). **Cancel safe**: dropping it drops only the wait (the job goes on;
/// use [`AsyncResult::cancel`] first to stop it).
///
/// ```standalone_crate
/// fn square(x: u64) -> u64 { x * x }
///
/// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main`
/// let pool = multiprocess::Pool::new(2)?;
/// let result = pool.apply_async(square, (7,))?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// assert_eq!(rt.block_on(async { result.await })?, 49);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Debug)]
pub struct ResultFuture<R>(AsyncResult<R>);

impl<R> IntoFuture for AsyncResult<R> {
    type Output = Result<R>;
    type IntoFuture = ResultFuture<R>;

    fn into_future(self) -> ResultFuture<R> {
        ResultFuture(self)
    }
}

impl<R> Future for ResultFuture<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        if self.0.job.poll_done(cx.waker()) {
            // Done: `get` returns at once.
            Poll::Ready(self.0.get_timeout(Duration::ZERO))
        } else {
            Poll::Pending
        }
    }
}
