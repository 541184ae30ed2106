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
use crate::sys::{self, Region};

/// Set in a lock word when a process may be sleeping on it.
const CONTENDED: u32 = 1 << 31;
/// The owner's pid in a lock word.
const PID_MASK: u32 = !CONTENDED;
/// How long an acquirer sleeps before checking that the lock's owner is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(50);
/// Python's text for releasing an unlocked `Lock` or a full `BoundedSemaphore`.
const RELEASED_TOO_MANY: &str = "semaphore or lock released too many times";

/// A point in time to wait until, or never.
#[derive(Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline(timeout.map(|t| Instant::now() + t))
    }

    /// What is left: `None` = forever, `Some(ZERO)` = over.
    pub(crate) fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
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

/// Takes the lock word for this process.
pub(crate) fn lock_word(
    region: &Region,
    word: &AtomicU32,
    block: bool,
    timeout: Option<Duration>,
) -> Result<bool> {
    let me = sys::current_pid();
    if word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return Ok(true);
    }
    lock_word_contended(region, word, me, block, Deadline::after(timeout))
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

// ---------------------------------------------------------------------------------------------

/// A non-recursive lock shared between processes: Python's `multiprocessing.Lock`.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let lock = multiprocess::Lock::new()?;
/// assert!(lock.acquire(true, None)?);
/// assert!(!lock.acquire(false, None)?); // held: a non-blocking attempt fails
/// lock.release()?;
/// {
///     let _held = lock.guard()?; // released at the end of the scope
/// }
/// assert!(lock.release().is_err()); // released too many times
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    region: Arc<Region>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock { region: region(1)? })
    }

    fn word(&self) -> &AtomicU32 {
        &self.region.words()[0]
    }

    /// Acquires the lock: with `block`, waits until it is free or `timeout` (`None`: forever)
    /// passes; without, returns at once. `Ok(true)` when acquired, `Ok(false)` otherwise.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] when the holder died holding it; the lock is free again.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        lock_word(&self.region, self.word(), block, timeout)
    }

    /// Releases the lock; any process may release it, as in Python.
    ///
    /// # Errors
    /// [`Error::State`] ("semaphore or lock released too many times") if it is not held.
    pub fn release(&self) -> Result<()> {
        unlock_word(&self.region, self.word())
    }

    /// Acquires the lock (waiting as long as it takes) and releases it when the guard drops:
    /// Python's `with lock:`.
    pub fn guard(&self) -> Result<LockGuard<'_>> {
        self.acquire(true, None)?;
        Ok(LockGuard { lock: self })
    }

    /// Whether the lock is held by some process.
    pub fn is_locked(&self) -> bool {
        self.word().load(Ordering::Relaxed) != 0
    }

    fn held_by_me(&self) -> bool {
        owned_by_me(self.word())
    }
}

impl std::fmt::Debug for Lock {
    /// Python's repr: `<Lock(owner=None)>` or `<Lock(owner=SomeOtherProcess)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = match self.word().load(Ordering::Relaxed) & PID_MASK {
            0 => "None".to_string(),
            pid => format!("pid {pid}"),
        };
        write!(f, "<Lock(owner={owner})>")
    }
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

// ---------------------------------------------------------------------------------------------

/// A re-entrant lock shared between processes: Python's `multiprocessing.RLock`. The thread
/// that holds it may acquire it again; it is free after as many releases as acquires, and only
/// its owner may release it.
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    /// Words: the lock word, the owning thread (within the owning process), the depth.
    region: Arc<Region>,
}

/// An id for the calling thread, unique within this process.
fn thread_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock { region: region(3)? })
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1], &w[2])
    }

    /// Whether the calling thread holds the lock.
    pub fn is_mine(&self) -> bool {
        let (word, owner, _) = self.words();
        owned_by_me(word) && owner.load(Ordering::Relaxed) == thread_id()
    }

    /// Acquires the lock (again, if this thread holds it); see [`Lock::acquire`].
    ///
    /// # Errors
    /// [`Error::OwnerDied`] when the holder died holding it; the lock is free again.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let (word, owner, depth) = self.words();
        if self.is_mine() {
            depth.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        if !lock_word(&self.region, word, block, timeout)? {
            return Ok(false);
        }
        owner.store(thread_id(), Ordering::Relaxed);
        depth.store(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Releases one level.
    ///
    /// # Errors
    /// [`Error::State`] ("cannot release un-acquired lock") unless this thread holds it.
    pub fn release(&self) -> Result<()> {
        if !self.is_mine() {
            return Err(Error::state("cannot release un-acquired lock"));
        }
        let (word, owner, depth) = self.words();
        if depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            owner.store(0, Ordering::Relaxed);
            unlock_word(&self.region, word)?;
        }
        Ok(())
    }

    /// Acquires the lock and releases one level when the guard drops.
    pub fn guard(&self) -> Result<RLockGuard<'_>> {
        self.acquire(true, None)?;
        Ok(RLockGuard { lock: self })
    }

    /// Releases every level this thread holds, returning the depth (for `Condition::wait`).
    fn release_all(&self) -> Result<u32> {
        if !self.is_mine() {
            return Err(Error::state("cannot release un-acquired lock"));
        }
        let (word, owner, depth) = self.words();
        let n = depth.swap(0, Ordering::Relaxed);
        owner.store(0, Ordering::Relaxed);
        unlock_word(&self.region, word)?;
        Ok(n)
    }

    /// Re-acquires after [`RLock::release_all`] at depth `n`.
    fn acquire_restore(&self, n: u32) -> Result<()> {
        let recovered = self.acquire(true, None);
        let (_, _, depth) = self.words();
        depth.store(n, Ordering::Relaxed);
        recovered.map(|_| ())
    }
}

impl std::fmt::Debug for RLock {
    /// Python's repr: `<RLock(owner, count)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (word, _, depth) = self.words();
        match word.load(Ordering::Relaxed) & PID_MASK {
            0 => write!(f, "<RLock(None, 0)>"),
            pid => write!(f, "<RLock(pid {pid}, {})>", depth.load(Ordering::Relaxed)),
        }
    }
}

/// Holds one level of an [`RLock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

// ---------------------------------------------------------------------------------------------

/// A counting semaphore shared between processes: Python's `multiprocessing.Semaphore`, and
/// with [`Semaphore::bounded`], `BoundedSemaphore`.
///
/// A bounded semaphore guards a pool of resources, so it records which processes hold its
/// slots (up to 64 processes at once): slots held by a process that died are recovered, and the
/// acquirer that notices gets [`Error::OwnerDied`]. A plain semaphore's count is a signal
/// (released by one process, taken by another) with no holders to recover.
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    /// Words: the count, the number of sleepers, the bound (0: none), then for bounded
    /// semaphores [`HOLDERS`] pairs (pid, slots held).
    region: Arc<Region>,
}

/// Python's `BoundedSemaphore`: a [`Semaphore`] that refuses to be released above its initial
/// value. Made with [`Semaphore::bounded`].
pub type BoundedSemaphore = Semaphore;

/// Processes whose slots a bounded semaphore tracks.
const HOLDERS: usize = 64;
const S_TABLE: usize = 3;

impl Semaphore {
    /// A semaphore with `value` free slots.
    pub fn new(value: u32) -> Result<Semaphore> {
        Self::with_bound(value, 0, 3)
    }

    /// A bounded semaphore: releasing it above `value` is an error.
    pub fn bounded(value: u32) -> Result<Semaphore> {
        if value == 0 {
            return Err(Error::InvalidArgument(
                "a bounded semaphore needs a value of at least 1".into(),
            ));
        }
        Self::with_bound(value, value, S_TABLE + 2 * HOLDERS)
    }

    fn with_bound(value: u32, bound: u32, words: usize) -> Result<Semaphore> {
        if value > i32::MAX as u32 {
            return Err(Error::InvalidArgument(
                "semaphore value is too large".into(),
            ));
        }
        let s = Semaphore {
            region: region(words)?,
        };
        s.words().0.store(value, Ordering::Relaxed);
        s.words().2.store(bound, Ordering::Relaxed);
        Ok(s)
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1], &w[2])
    }

    fn bound(&self) -> u32 {
        self.words().2.load(Ordering::Relaxed)
    }

    /// The holder table of a bounded semaphore: (pid, slots) pairs.
    fn holders(&self) -> impl Iterator<Item = (&AtomicU32, &AtomicU32)> {
        let table = self.region.words().get(S_TABLE..).unwrap_or(&[]);
        table.chunks_exact(2).map(|pair| (&pair[0], &pair[1]))
    }

    /// Records a slot taken by this process (bounded semaphores only).
    fn record_taken(&self) {
        let me = sys::current_pid();
        if let Some((_, held)) = self
            .holders()
            .find(|(pid, _)| pid.load(Ordering::Relaxed) == me)
        {
            held.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for (pid, held) in self.holders() {
            if pid
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                held.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // More than HOLDERS processes at once: this slot is not tracked.
    }

    /// Forgets one slot of this process, if it holds one (it may release a slot it never took).
    fn record_released(&self) {
        let me = sys::current_pid();
        for (pid, held) in self.holders() {
            if pid.load(Ordering::Relaxed) == me {
                let _ =
                    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                return;
            }
        }
    }

    /// Gives back the slots of holders that died; reports the first.
    fn recover_dead_holders(&self) -> Result<()> {
        let (count, _, bound) = self.words();
        let bound = bound.load(Ordering::Relaxed);
        let mut died = None;
        for (pid, held) in self.holders() {
            let owner = pid.load(Ordering::Relaxed);
            if owner == 0 || sys::process_alive(owner) {
                continue;
            }
            let slots = held.swap(0, Ordering::Relaxed);
            let _ = pid.compare_exchange(owner, 0, Ordering::Relaxed, Ordering::Relaxed);
            if slots > 0 {
                let _ = count.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| {
                    Some((c + slots).min(bound))
                });
                self.region.wake(count, u32::MAX);
                died.get_or_insert(owner);
            }
        }
        match died {
            Some(pid) => Err(Error::OwnerDied { pid }),
            None => Ok(()),
        }
    }

    /// Takes a slot: with `block`, waits until one is free or `timeout` passes. `Ok(true)` when
    /// a slot was taken.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] (bounded semaphores) when slots of a dead process were recovered
    /// while waiting; they are free again and no slot was taken.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let taken = self.take(block, Deadline::after(timeout))?;
        if taken && self.bound() != 0 {
            self.record_taken();
        }
        Ok(taken)
    }

    fn take(&self, block: bool, deadline: Deadline) -> Result<bool> {
        let (count, sleepers, _) = self.words();
        let bounded = self.bound() != 0;
        loop {
            let c = count.load(Ordering::Relaxed);
            if c > 0 {
                if count
                    .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(true);
                }
                continue;
            }
            if !block || deadline.passed() {
                if bounded {
                    self.recover_dead_holders()?;
                }
                return Ok(false);
            }
            // Bounded semaphores wake up now and then to look for dead holders.
            let slice = if bounded {
                Deadline::after(Some(
                    deadline
                        .remaining()
                        .map_or(LIVENESS_CHECK, |left| left.min(LIVENESS_CHECK)),
                ))
            } else {
                deadline
            };
            sleepers.fetch_add(1, Ordering::SeqCst);
            let woken = sleep_on(&self.region, count, 0, slice);
            sleepers.fetch_sub(1, Ordering::SeqCst);
            if !woken && bounded {
                self.recover_dead_holders()?;
            }
        }
    }

    /// Frees a slot, waking one waiter.
    ///
    /// # Errors
    /// [`Error::State`] ("semaphore or lock released too many times") when a bounded semaphore
    /// is already at its initial value.
    pub fn release(&self) -> Result<()> {
        let (count, sleepers, bound) = self.words();
        let bound = bound.load(Ordering::Relaxed);
        let mut c = count.load(Ordering::Relaxed);
        loop {
            if (bound != 0 && c >= bound) || c >= i32::MAX as u32 {
                return Err(Error::state(RELEASED_TOO_MANY));
            }
            match count.compare_exchange_weak(c, c + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if bound != 0 {
            self.record_released();
        }
        if sleepers.load(Ordering::SeqCst) > 0 {
            self.region.wake(count, 1);
        }
        Ok(())
    }

    /// Takes a slot and frees it when the guard drops.
    pub fn guard(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire(true, None)?;
        Ok(SemaphoreGuard { semaphore: self })
    }

    /// The number of free slots (Python's `get_value()`).
    pub fn get_value(&self) -> u32 {
        self.words().0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Semaphore {
    /// Python's repr: `<Semaphore(value=N)>` or `<BoundedSemaphore(value=N, maxvalue=M)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.words().2.load(Ordering::Relaxed) {
            0 => write!(f, "<Semaphore(value={})>", self.get_value()),
            max => write!(
                f,
                "<BoundedSemaphore(value={}, maxvalue={max})>",
                self.get_value()
            ),
        }
    }
}

/// Holds a [`Semaphore`] slot until dropped.
#[must_use = "the slot is freed when the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.semaphore.release();
    }
}

// ---------------------------------------------------------------------------------------------

/// A flag that processes can wait for: Python's `multiprocessing.Event`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    /// Words: the flag, the number of sleepers.
    region: Arc<Region>,
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Result<Event> {
        Ok(Event { region: region(2)? })
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1])
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.words().0.load(Ordering::Acquire) == 1
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let (flag, sleepers) = self.words();
        flag.store(1, Ordering::SeqCst);
        if sleepers.load(Ordering::SeqCst) > 0 {
            self.region.wake(flag, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.words().0.store(0, Ordering::SeqCst);
    }

    /// Waits until the flag is set or `timeout` passes; returns the flag.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let (flag, sleepers) = self.words();
        let deadline = Deadline::after(timeout);
        loop {
            if self.is_set() {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            sleepers.fetch_add(1, Ordering::SeqCst);
            sleep_on(&self.region, flag, 0, deadline);
            sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Event {
    /// Python's repr: `<Event set>` / `<Event unset>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(f, "<Event {state}>")
    }
}

// ---------------------------------------------------------------------------------------------

/// The lock under a [`Condition`]: Python accepts a `Lock` or an `RLock` (the default).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A plain lock.
    Lock(Lock),
    /// A re-entrant lock.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

/// A condition variable shared between processes: Python's `multiprocessing.Condition`.
///
/// Acquire it (it delegates to its lock), check your state, `wait` until notified; `notify`
/// and `notify_all` require holding the lock too, as in Python.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: ConditionLock,
    /// Words: a sequence number bumped by every notify, the number of sleepers.
    region: Arc<Region>,
}

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    pub fn new() -> Result<Condition> {
        Self::with_lock(RLock::new()?)
    }

    /// A condition over `lock`.
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Condition> {
        Ok(Condition {
            lock: lock.into(),
            region: region(2)?,
        })
    }

    /// The underlying lock.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Acquires the underlying lock.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        match &self.lock {
            ConditionLock::Lock(l) => l.acquire(block, timeout),
            ConditionLock::RLock(l) => l.acquire(block, timeout),
        }
    }

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<()> {
        match &self.lock {
            ConditionLock::Lock(l) => l.release(),
            ConditionLock::RLock(l) => l.release(),
        }
    }

    /// Acquires the lock and releases it when the guard drops.
    pub fn guard(&self) -> Result<ConditionGuard<'_>> {
        self.acquire(true, None)?;
        Ok(ConditionGuard { condition: self })
    }

    fn check_owned(&self, what: &str) -> Result<()> {
        let mine = match &self.lock {
            ConditionLock::Lock(l) => l.held_by_me(),
            ConditionLock::RLock(l) => l.is_mine(),
        };
        if mine {
            Ok(())
        } else {
            Err(Error::state(format!(
                "must acquire() condition before using {what}()"
            )))
        }
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32) {
        let w = self.region.words();
        (&w[0], &w[1])
    }

    /// Releases the lock, sleeps until notified or `timeout` passes, and re-acquires the lock
    /// (at its previous depth for an `RLock`). `Ok(false)` when the timeout passed.
    ///
    /// # Errors
    /// [`Error::State`] ("must acquire() condition before using wait()") without the lock.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_owned("wait")?;
        let (seq, sleepers) = self.words();
        let ticket = seq.load(Ordering::SeqCst);
        sleepers.fetch_add(1, Ordering::SeqCst);
        let depth = match &self.lock {
            ConditionLock::Lock(l) => l.release().map(|()| 0),
            ConditionLock::RLock(l) => l.release_all(),
        };
        let deadline = Deadline::after(timeout);
        let notified = depth.is_ok()
            && loop {
                if !sleep_on(&self.region, seq, ticket, deadline) {
                    break false;
                }
                if seq.load(Ordering::SeqCst) != ticket {
                    break true;
                }
            };
        sleepers.fetch_sub(1, Ordering::SeqCst);
        match (&self.lock, depth?) {
            (ConditionLock::Lock(l), _) => l.acquire(true, None).map(|_| ())?,
            (ConditionLock::RLock(l), n) => l.acquire_restore(n)?,
        }
        Ok(notified)
    }

    /// Waits until `predicate()` is true (checked with the lock held) or `timeout` passes;
    /// returns the predicate's last value.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            self.wait(deadline.remaining())?;
        }
    }

    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    /// [`Error::State`] without the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.check_owned("notify")?;
        let (seq, sleepers) = self.words();
        seq.fetch_add(1, Ordering::SeqCst);
        if sleepers.load(Ordering::SeqCst) > 0 {
            self.region.wake(seq, n);
        }
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

/// Holds a [`Condition`]'s lock until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ConditionGuard<'a> {
    condition: &'a Condition,
}

impl ConditionGuard<'_> {
    /// [`Condition::wait`] while holding this guard.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.condition.wait(timeout)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.condition.release();
    }
}

// ---------------------------------------------------------------------------------------------

/// A function run by the last party to arrive at a [`Barrier`], found in every process by its
/// offset in the executable (like a `Process` target).
#[derive(Clone, Copy)]
struct Action(sys::image::Trampoline);

fn call_action<F: Fn() + Copy + 'static>(_: &[u8]) -> Result<Vec<u8>> {
    sys::image::conjure::<F>()();
    Ok(Vec::new())
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let offset = sys::image::code_offset(self.0).map_err(S::Error::custom)?;
        (offset, sys::image::seal(offset)).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let (offset, check) = <(i64, u64)>::deserialize(deserializer)?;
        sys::image::trampoline_at(offset, check)
            .map(Action)
            .map_err(D::Error::custom)
    }
}

/// A meeting point for a fixed number of processes: Python's `multiprocessing.Barrier`.
///
/// [`wait`](Barrier::wait) returns once `parties` callers are waiting, giving each a distinct
/// index in `0..parties` (arrival order). The last to arrive first runs the action, if any.
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    /// Words: an internal lock, the number waiting, the generation, broken (0/1), the
    /// generation a reset ended plus one.
    region: Arc<Region>,
    parties: u32,
    action: Option<Action>,
    timeout: Option<Duration>,
}

const B_LOCK: usize = 0;
const B_COUNT: usize = 1;
const B_GENERATION: usize = 2;
const B_BROKEN: usize = 3;
const B_RESET: usize = 4;

impl Barrier {
    /// A barrier for `parties` processes (or threads), with no action and no default timeout.
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "parties must be greater than 0".into(),
            ));
        }
        Ok(Barrier {
            region: region(5)?,
            parties,
            action: None,
            timeout: None,
        })
    }

    /// Sets the action run by the last party to arrive, before the others are released: a
    /// function item or non-capturing closure (so every process can find it). If it panics,
    /// the barrier breaks and that caller gets [`Error::Panicked`].
    pub fn action<F: Fn() + Copy + 'static>(mut self, _action: F) -> Barrier {
        self.action = Some(Action(call_action::<F>));
        self
    }

    /// Sets the default timeout of [`wait`](Barrier::wait).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Barrier {
        self.timeout = timeout;
        self
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        &self.region.words()[i]
    }

    fn lock(&self) {
        loop {
            match lock_word(&self.region, self.word(B_LOCK), true, None) {
                Ok(_) => return,
                // A party died inside the barrier's bookkeeping: its state is suspect.
                Err(_) => self.word(B_BROKEN).store(1, Ordering::Relaxed),
            }
        }
    }

    fn unlock(&self) {
        let _ = unlock_word(&self.region, self.word(B_LOCK));
    }

    fn release_all(&self) {
        self.word(B_GENERATION).fetch_add(1, Ordering::SeqCst);
        self.region.wake(self.word(B_GENERATION), u32::MAX);
    }

    /// Waits until all parties have called `wait`; `timeout` (else the barrier's default)
    /// bounds the wait. Returns this caller's index.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (aborted, reset while
    /// waiting, or a timed-out wait, which breaks it for everyone); [`Error::Panicked`] for the
    /// caller whose action panicked.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        let deadline = Deadline::after(timeout.or(self.timeout));
        self.lock();
        if self.word(B_BROKEN).load(Ordering::Relaxed) != 0 {
            self.unlock();
            return Err(Error::BrokenBarrier);
        }
        let index = self.word(B_COUNT).fetch_add(1, Ordering::Relaxed);
        if index + 1 >= self.parties {
            let outcome = match self.action {
                Some(Action(action)) => std::panic::catch_unwind(AssertUnwindSafe(|| action(&[]))),
                None => Ok(Ok(Vec::new())),
            };
            if let Err(panic) = outcome {
                self.break_locked();
                self.unlock();
                return Err(Error::Panicked {
                    message: crate::panics::message(&panic),
                });
            }
            self.word(B_COUNT).store(0, Ordering::Relaxed);
            self.release_all();
            self.unlock();
            return Ok(index);
        }
        let generation = self.word(B_GENERATION).load(Ordering::Relaxed);
        loop {
            self.unlock();
            let woken = sleep_on(&self.region, self.word(B_GENERATION), generation, deadline);
            self.lock();
            if self.word(B_GENERATION).load(Ordering::Relaxed) != generation {
                let reset = self.word(B_RESET).load(Ordering::Relaxed) == generation + 1;
                self.unlock();
                return if reset {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(index)
                };
            }
            if self.word(B_BROKEN).load(Ordering::Relaxed) != 0 {
                self.leave_broken();
                return Err(Error::BrokenBarrier);
            }
            if !woken || deadline.passed() {
                self.break_locked();
                self.leave_broken();
                return Err(Error::BrokenBarrier);
            }
        }
    }

    /// With the internal lock held: marks the barrier broken and wakes every waiter.
    fn break_locked(&self) {
        self.word(B_BROKEN).store(1, Ordering::Relaxed);
        // Waiters sleep on the generation word: wake them to see the flag.
        self.region.wake(self.word(B_GENERATION), u32::MAX);
    }

    /// With the internal lock held: leaves a broken barrier, then unlocks.
    fn leave_broken(&self) {
        let count = self.word(B_COUNT);
        let c = count.load(Ordering::Relaxed);
        count.store(c.saturating_sub(1), Ordering::Relaxed);
        self.unlock();
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.lock();
        self.break_locked();
        self.unlock();
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        self.lock();
        let generation = self.word(B_GENERATION).load(Ordering::Relaxed);
        if self.word(B_COUNT).load(Ordering::Relaxed) > 0 {
            self.word(B_RESET)
                .store(generation.wrapping_add(1), Ordering::Relaxed);
        }
        self.word(B_COUNT).store(0, Ordering::Relaxed);
        self.word(B_BROKEN).store(0, Ordering::Relaxed);
        self.release_all();
        self.unlock();
    }

    /// The number of parties needed.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.word(B_COUNT).load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.word(B_BROKEN).load(Ordering::Relaxed) != 0
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<Barrier(parties={}, waiting={}, broken={})>",
            self.parties,
            self.n_waiting(),
            self.broken()
        )
    }
}
