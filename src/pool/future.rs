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

/// [`Pool::imap`](super::Pool::imap) and [`Pool::imap_unordered`](super::Pool::imap_unordered)
/// as a [`Stream`](futures_core::Stream) (cargo feature `tokio`; beyond Python): the same
/// items as the iterator, in the same order, with no thread waiting. Each poll submits more
/// input while the look-ahead has room (the input iterator runs on the polling thread, so it
/// should not block), then yields a result if one is in; the pool wakes the task as each task's
/// outcome comes. It works with any executor (no runtime needed); `StreamExt::next` from the
/// `futures` or `tokio-stream` crates reads it, or `std::future::poll_fn` as below. The
/// stream is not `Send` when its input iterator is not.
///
/// **Cancel safety**: dropping a `next()` future loses nothing (a result is taken only when
/// it is returned); dropping the stream cancels what is still queued, as dropping the iterator
/// does.
///
/// ```standalone_crate
/// use std::pin::Pin;
/// use futures_core::Stream;
/// fn square(x: u64) -> u64 { x * x }
///
/// multiprocess::init_test(); // `multiprocess::init()` as the first line of `main`
/// let pool = multiprocess::Pool::new(2)?;
/// let mut squares = pool.imap_chunked(square, 0..10u64, 2)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let got = rt.block_on(async {
///     let mut got = Vec::new();
///     while let Some(x) = std::future::poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
///         got.push(x?);
///     }
///     Ok::<_, multiprocess::Error>(got)
/// })?;
/// assert_eq!(got, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[cfg(feature = "tokio")]
impl<R: serde::de::DeserializeOwned> futures_core::Stream for super::IMap<'_, R> {
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().poll_next_result(cx.waker())
    }
}

/// Nothing of an `IMap` is pinned in place (its results wait in a buffer it moves freely).
impl<R> Unpin for super::IMap<'_, R> {}
