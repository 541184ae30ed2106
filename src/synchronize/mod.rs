//! Locks and their kin, shared between processes: Python's `multiprocessing.synchronize`.
//!
//! Every object lives in a small shared-memory region and is a handle to it: `clone()` gives
//! another handle in the same process (for threads), and passing the object as a
//! [`Process`](crate::Process) argument (or in a [`Connection`](crate::Connection) message on
//! Unix) gives the other process a handle to the same lock. Under `fork` a captured handle just
//! works.
//!
//! **How they work.** State is a few 32-bit words. Uncontended operations are one atomic
//! instruction, no system call; a contended caller sleeps in the kernel on the word at once (a
//! futex on Linux, `__ulock_wait` on macOS, a semaphore on Windows, where no cross-process
//! address wait exists). It does not spin first: measured (W6), spinning made two processes
//! hammering one lock on two CPUs bounce it between them and run 30% slower.
//!
//! **Crash-robust (beyond Python).** A [`Lock`] or [`RLock`] word holds its owner's pid. An
//! acquirer that has slept for a while checks that the owner is still running; if it died
//! holding the lock, the acquirer frees the lock and returns [`Error::OwnerDied`]: the lock
//! works again, and the caller learns that the data it protects may be half-updated. Python
//! deadlocks forever in that case. A consequence: a `Lock` counts as its acquirer's for this
//! check, so a process should not exit holding a lock that another process means to release.
//! A bounded semaphore's slots are recovered the same way; a plain [`Semaphore`] counts signals
//! and has no holders to recover.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::log::{self, Level};
use crate::sys::{self, Region};

/// Set in a lock word when a process may be sleeping on it.
const CONTENDED: u32 = 1 << 31;
/// The owner's pid in a lock word.
const PID_MASK: u32 = !CONTENDED;
/// How long an acquirer sleeps before checking that the lock's owner is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(50);
/// Python's text for releasing an unlocked `Lock` or a full `BoundedSemaphore`.
const RELEASED_TOO_MANY: &str = "semaphore or lock released too many times";

/// A point in time to wait until, or never. A zero timeout is one that has passed, known
/// without reading the clock (a read is some 25 ns here, and a manager call's or a queue's
/// look without a wait makes several: issue 19, W8).
#[derive(Clone, Copy)]
pub(crate) enum Deadline {
    Never,
    At(Instant),
    Passed,
}

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        match timeout {
            None => Deadline::Never,
            Some(Duration::ZERO) => Deadline::Passed,
            Some(t) => sys::deadline_after(t).map_or(Deadline::Never, Deadline::At),
        }
    }

    /// What is left: `None` = forever, `Some(ZERO)` = over.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::At(d) => Some(d.saturating_duration_since(Instant::now())),
            Deadline::Passed => Some(Duration::ZERO),
        }
    }

    pub(crate) fn passed(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// A new region of `words` zeroed words.
fn region(words: usize) -> Result<Arc<Region>> {
    Region::new(words * 4)
        .map(Arc::new)
        .map_err(|e| Error::io("creating shared memory for a synchronisation object", e))
}

/// Sleeps on `word` while it equals `expected`, for at most `deadline`; false when it passed.
fn sleep_on(region: &Region, word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    match deadline.remaining() {
        Some(Duration::ZERO) => false,
        left => region.wait(word, expected, left),
    }
}

// ---------------------------------------------------------------------------------------------
// The lock word: 0 = free, else the owner's pid, plus CONTENDED when someone may sleep on it.

/// Takes the lock word for this process (waiting up to `timeout` if `block`).
pub(crate) fn lock_word(
    region: &Region,
    word: &AtomicU32,
    block: bool,
    timeout: Option<Duration>,
) -> Result<bool> {
    let me = sys::current_pid();
    if take_free(word, me) {
        return Ok(true);
    }
    lock_word_contended(region, word, me, block, Deadline::after(timeout))
}

/// Takes the lock word for this process, waiting up to `deadline` (read only if it is held).
pub(crate) fn lock_word_until(
    region: &Region,
    word: &AtomicU32,
    deadline: Deadline,
) -> Result<bool> {
    let me = sys::current_pid();
    if take_free(word, me) {
        return Ok(true);
    }
    lock_word_contended(region, word, me, true, deadline)
}

/// Takes the lock word if it is free.
#[inline]
fn take_free(word: &AtomicU32, me: u32) -> bool {
    word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

#[cold]
fn lock_word_contended(
    region: &Region,
    word: &AtomicU32,
    me: u32,
    block: bool,
    deadline: Deadline,
) -> Result<bool> {
    loop {
        let v = word.load(Ordering::Relaxed);
        if v == 0 {
            // Others may be asleep: keep the flag so our release wakes one.
            if word
                .compare_exchange(0, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(true);
            }
            continue;
        }
        if !block {
            recover_if_dead(region, word, v)?;
            return Ok(false);
        }
        if v & CONTENDED == 0
            && word
                .compare_exchange(v, v | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        if deadline.passed() {
            return Ok(false);
        }
        let slice = Deadline::after(Some(
            deadline
                .remaining()
                .map_or(LIVENESS_CHECK, |left| left.min(LIVENESS_CHECK)),
        ));
        if !sleep_on(region, word, v | CONTENDED, slice) {
            recover_if_dead(region, word, v | CONTENDED)?;
        }
    }
}

/// If the owner recorded in `v` (still the word's value) has died, frees the lock and reports it.
fn recover_if_dead(region: &Region, word: &AtomicU32, v: u32) -> Result<()> {
    let owner = v & PID_MASK;
    if owner != 0
        && !sys::process_alive(owner)
        && word
            .compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        region.wake(word, u32::MAX);
        log::event!(
            Level::Warning,
            { pid = owner },
            "a lock's holder (pid {owner}) died holding it: the lock is free again"
        );
        return Err(Error::OwnerDied { pid: owner });
    }
    Ok(())
}

/// Frees the lock word; an error if it was free.
pub(crate) fn unlock_word(region: &Region, word: &AtomicU32) -> Result<()> {
    let v = word.swap(0, Ordering::Release);
    if v == 0 {
        return Err(Error::state(RELEASED_TOO_MANY));
    }
    if v & CONTENDED != 0 {
        region.wake(word, 1);
    }
    Ok(())
}

fn owned_by_me(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) & PID_MASK == sys::current_pid()
}

/// The short forms of Python's `acquire(block=True, timeout=None)` on a type whose
/// `acquire_with(block, timeout) -> Result<bool>` is the full one: `acquire()`,
/// `try_acquire()` (Python's `acquire(False)`) and `acquire_timeout(d)`.
macro_rules! acquire_forms {
    () => {
        /// Acquires, waiting as long as it takes (Python's `acquire()`).
        ///
        /// # Errors
        /// As [`acquire_with`](Self::acquire_with).
        pub fn acquire(&self) -> Result<()> {
            self.acquire_with(true, None).map(|_| ())
        }

        /// Acquires only if that needs no wait (Python's `acquire(False)`): true if acquired.
        ///
        /// # Errors
        /// As [`acquire_with`](Self::acquire_with).
        pub fn try_acquire(&self) -> Result<bool> {
            self.acquire_with(false, None)
        }

        /// Acquires, waiting at most `timeout` (Python's `acquire(timeout=t)`): true if
        /// acquired.
        ///
        /// # Errors
        /// As [`acquire_with`](Self::acquire_with).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            self.acquire_with(true, Some(timeout))
        }
    };
}
pub(crate) use acquire_forms;

mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, ConditionLock};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
