//! Async waits (cargo feature `tokio`), Windows: event-driven, through the OS thread pool.
//!
//! - **Waitable handles** (process handles, events, the queue's wake-up event): a wait is a
//!   [`Registration`], `RegisterWaitForSingleObject` with `WT_EXECUTEONLYONCE`, whose callback
//!   wakes the future's `Waker`. The pool's wait threads are shared (no thread per wait); the
//!   registration is undone with `UnregisterWaitEx(.., INVALID_HANDLE_VALUE)` when the future
//!   is dropped, which returns only after a callback already running has finished, so the
//!   callback never sees freed state. `join_async` wakes at the child's exit.
//! - **Pipes** (a `Connection`'s ends, the parent–child channel) are overlapped named pipes
//!   that keep a read pending while someone waits (see `pipe`): its event, signalled when bytes
//!   or end of file arrive, is registered like any waitable handle. Reads take only what has
//!   arrived ([`Channel::read_available`](super::Channel)).
//! - **Writes** ([`send_now`]) never block: each hands up to 65 KiB (a copy) to an overlapped
//!   `WriteFile`. Done at once (the pipe had room), the bytes are sent; otherwise the write
//!   stays in flight, [`writable_async`] waits on its event, and the next call with the same
//!   bytes collects it. A send future resolves only once its last write completed (the bytes
//!   are in the pipe, as after a blocking send). **Cancelled** while a write is in flight, the
//!   write is cancelled (`CancelIoEx`, then awaited) at the next write on that end or when
//!   the end is dropped: if none of its bytes had gone into the pipe, the end is unaffected;
//!   if some had, the end refuses every later send (`an async send was cancelled
//!   mid-message`), as it does for a send cut after its first bytes.
//! - **A queue's wake-up channel** ([`wakeup_pair`]) is a manual-reset event that producers
//!   and consumers set (only while an async waiter is counted, see `queues::aio`). A watcher
//!   resets it after each wake, before it looks at the queue again. Because a thread-pool wait
//!   is armed a little after it is registered, another watcher's reset could in theory fall
//!   between a set and the arming of a wait registered just before that set; each
//!   [`Watch::changed`] therefore also ends after [`WATCH_GUARD`] (a look, not a busy poll).
//! - **A pipe listener** (`accept_async`) keeps an overlapped `ConnectNamedPipe` in flight
//!   on its waiting instance between looks (cancelled and awaited when the listener is
//!   dropped; a blocking `accept` waits on it); its event is registered like any other.
//! - **Fallbacks on a timer** (1 ms, doubling to 20 ms between looks), only where there is no
//!   handle to wait on: std sockets in `wait_async` and a TCP listener's `accept_async` (a
//!   socket is a waitable object only after `WSAEventSelect`, which would make it
//!   non-blocking for good).

use std::ffi::c_void;
use std::future::poll_fn;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, RegisterWaitForSingleObject, ResetEvent, SetEvent, UnregisterWaitEx,
    WT_EXECUTEONLYONCE,
};

use super::{OwnedHandle, WaitHandle, wait_readable};
use crate::sys::lock;

/// The longest a queue's [`Watch::changed`] waits without a signal before the queue is looked
/// at again (see the module docs).
const WATCH_GUARD: Duration = Duration::from_millis(250);

/// What a registered wait's callback shares with the future: the waker to wake and whether
/// the handle was signalled (or the wait timed out).
struct Shared {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The callback of a registered wait: marks it fired and wakes the task.
unsafe extern "system" fn on_signal(context: *mut c_void, _timed_out: bool) {
    // SAFETY: `context` is the `Shared` of a live `Registration`: its Drop unregisters the
    // wait and waits for this callback to finish (UnregisterWaitEx with INVALID_HANDLE_VALUE)
    // before the `Shared` is freed.
    let shared = unsafe { &*(context as *const Shared) };
    shared.fired.store(true, Ordering::SeqCst);
    let waker = lock(&shared.waker).take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// One wait registered with the OS thread pool on a handle that stays open for `'a`: fires
/// once, when the handle is signalled (or after the timeout given).
struct Registration<'a> {
    wait: HANDLE,
    /// Boxed: its address is the callback's context until Drop has unregistered the wait.
    shared: Box<Shared>,
    _handle: std::marker::PhantomData<BorrowedHandle<'a>>,
}

// SAFETY: the wait handle is a process-wide value usable from any thread (unregistering it
// from another thread than the one that registered it is allowed); `Shared` is Sync.
unsafe impl Send for Registration<'_> {}
// SAFETY: as above; `&Registration` only reads the atomic and locks the mutex.
unsafe impl Sync for Registration<'_> {}

impl<'a> Registration<'a> {
    /// Registers a one-shot wait on `handle` (`timeout`: `None` for none).
    fn new(handle: BorrowedHandle<'a>, timeout: Option<Duration>) -> io::Result<Registration<'a>> {
        let shared = Box::new(Shared {
            fired: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        let ms = timeout.map_or(INFINITE, |t| {
            t.as_millis().clamp(1, u128::from(INFINITE - 1)) as u32
        });
        let mut wait: HANDLE = std::ptr::null_mut();
        // SAFETY: `handle` stays open for 'a, which this registration cannot outlive; the
        // context points at the boxed `Shared`, which lives until Drop has unregistered the
        // wait and any running callback has returned.
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                handle.as_raw_handle(),
                Some(on_signal),
                (&raw const *shared).cast(),
                ms,
                WT_EXECUTEONLYONCE,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Registration {
            wait,
            shared,
            _handle: std::marker::PhantomData,
        })
    }

    /// Ready once the wait fired; otherwise the task is woken when it does.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *lock(&self.shared.waker) = Some(cx.waker().clone());
        // Fired between the first look and the waker's store: the callback found no waker.
        if self.shared.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // SAFETY: unregisters our own wait; INVALID_HANDLE_VALUE makes the call return only
        // once a callback already running has returned, so none touches `shared` after this.
        // (It is never called from the callback, which would deadlock.)
        unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
    }
}

/// Waits until one of `registrations` fired.
async fn any_fired(registrations: &[Registration<'_>]) {
    poll_fn(|cx| {
        let mut ready = false;
        // Every one gets the waker (no short cut): any of them may fire first.
        for r in registrations {
            ready |= r.poll(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

fn no_runtime() -> io::Error {
    io::Error::other("an async wait needs a tokio runtime with its timer enabled")
}

/// Waits until one of `handles` is ready (bytes, end of file, a process's exit).
///
/// # Errors
/// Outside a tokio runtime, or if the OS refuses a wait.
pub(crate) async fn readable_async(handles: &[WaitHandle<'_>]) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(no_runtime());
    }
    let mut pause = Duration::from_millis(1);
    loop {
        // Also makes sure each channel has a read pending, whose event then signals news.
        if wait_readable(handles, Some(Duration::ZERO))?.contains(&true) {
            return Ok(());
        }
        let mut registrations = Vec::with_capacity(handles.len());
        let mut sockets = false;
        for h in handles {
            match h {
                WaitHandle::Object(o) => registrations.push(Registration::new(*o, None)?),
                WaitHandle::Channel(c) => {
                    // SAFETY: the event lives as long as the channel, borrowed for the wait.
                    let event = unsafe { BorrowedHandle::borrow_raw(c.event()) };
                    registrations.push(Registration::new(event, None)?);
                }
                // No handle to wait on (see the module docs): looked at on a timer.
                WaitHandle::Socket(_) => sockets = true,
            }
        }
        if sockets {
            let _ = tokio::time::timeout(pause, any_fired(&registrations)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        } else {
            any_fired(&registrations).await;
        }
    }
}

/// Waits until a client connects to a pipe listener: on the event of the offer to clients
/// that [`accept_now`](super::SocketListener::accept_now) left in flight. A TCP listener is a
/// socket, no handle to wait on (see the module docs): there this sleeps `pause` on tokio's
/// timer (doubling it, up to 20 ms) between looks.
///
/// # Errors
/// Outside a tokio runtime, or if the OS refuses the wait.
pub(crate) async fn acceptable_async(
    listener: &super::SocketListener,
    pause: &mut Duration,
) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(no_runtime());
    }
    if let Some(event) = listener.offer_event() {
        // The event stays open while `event` (an Arc) lives, across the wait.
        let registration =
            Registration::new(std::os::windows::io::AsHandle::as_handle(&*event), None)?;
        any_fired(std::slice::from_ref(&registration)).await;
        return Ok(());
    }
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_millis(20));
    Ok(())
}

/// Waits until the stream's write in flight, if any, has completed (see [`send_now`]).
///
/// # Errors
/// Outside a tokio runtime, or if the OS refuses the wait.
pub(crate) async fn writable_async(handle: WaitHandle<'_>) -> io::Result<()> {
    let WaitHandle::Channel(c) = handle else {
        return Ok(());
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(no_runtime());
    }
    if !c.write_in_flight() {
        return Ok(());
    }
    // SAFETY: the event lives as long as the channel, borrowed for the wait. It stays
    // signalled once the write completed until the next write starts, which is ours.
    let event = unsafe { BorrowedHandle::borrow_raw(c.write_event()) };
    let registration = Registration::new(event, None)?;
    any_fired(std::slice::from_ref(&registration)).await;
    Ok(())
}

/// A queue's wake-up channel: one manual-reset event, twice (the end to signal, the end to
/// watch), not inheritable (it travels to children as a handle of a message).
///
/// # Errors
/// If the OS is out of handles.
pub(crate) fn wakeup_pair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    // SAFETY: no security attributes (not inheritable), manual reset, unset, no name.
    let h = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle that we own.
    let event = unsafe { OwnedHandle::from_raw_handle(h) };
    let watched = event.try_clone()?;
    Ok((event, watched))
}

/// Sets the wake-up event: every watcher's registered wait fires. Never blocks; a failure is
/// ignored (the watchers then look again after [`WATCH_GUARD`]).
pub(crate) fn wakeup_signal(signal: &OwnedHandle, _watched: &OwnedHandle) {
    // SAFETY: sets an event we hold.
    unsafe { SetEvent(signal.as_raw_handle()) };
}

/// Waits for signals of a [`wakeup_pair`] (a thread-pool wait on its event per
/// [`changed`](Watch::changed)), or, without one, for the next look on a timer (1 ms,
/// doubling to 20 ms).
pub(crate) struct Watch<'a> {
    watched: Option<BorrowedHandle<'a>>,
    pause: Duration,
}

impl<'a> Watch<'a> {
    /// A watch of `watched` (`None`: the timer).
    ///
    /// # Errors
    /// Outside a tokio runtime.
    pub(crate) fn new(watched: Option<WaitHandle<'a>>) -> io::Result<Watch<'a>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime());
        }
        Ok(Watch {
            watched: watched.map(super::kernel_handle),
            pause: Duration::from_millis(1),
        })
    }

    /// Waits for a signal (at most [`WATCH_GUARD`]), then unsets the event for the next wait:
    /// the caller looks at the queue after this returns, so a change signalled before the
    /// reset is seen by that look.
    ///
    /// # Errors
    /// If the OS refuses the wait.
    pub(crate) async fn changed(&mut self) -> io::Result<()> {
        match self.watched {
            Some(event) => {
                let registration = Registration::new(event, Some(WATCH_GUARD))?;
                any_fired(std::slice::from_ref(&registration)).await;
                drop(registration);
                // SAFETY: unsets an event we hold.
                unsafe { ResetEvent(event.as_raw_handle()) };
                Ok(())
            }
            None => {
                tokio::time::sleep(self.pause).await;
                self.pause = (self.pause * 2).min(Duration::from_millis(20));
                Ok(())
            }
        }
    }
}
