//! `Semaphore` and `BoundedSemaphore`: a counter with a table of holders, so that units held by a
//! process that died come back.

use super::*;

/// A counting semaphore shared between processes: Python's `multiprocessing.Semaphore`, and
/// with [`Semaphore::bounded`], `BoundedSemaphore`.
///
/// A bounded semaphore guards a pool of resources, so it records which processes hold its
/// slots (up to 64 processes at once): slots held by a process that died are recovered, and the
/// acquirer that notices gets [`Error::OwnerDied`]. A plain semaphore's count is a signal
/// (released by one process, taken by another) with no holders to recover.
///
/// ```standalone_crate
/// use multiprocess::{Process, Semaphore};
///
/// /// Takes a slot for the duration of its "work".
/// fn work(slots: Semaphore) {
///     let _slot = slots.guard().unwrap();
///     std::thread::sleep(std::time::Duration::from_millis(10));
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let slots = Semaphore::new(2)?; // at most two at a time
/// let mut workers: Vec<Process> = (0..4).map(|_| Process::new(work, (slots.clone(),))).collect();
/// for p in &mut workers {
///     p.start()?;
/// }
/// for p in &mut workers {
///     p.join()?;
/// }
/// assert_eq!(slots.get_value(), 2); // every slot given back
/// # Ok(()) }
/// ```
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
            Some(pid) => {
                crate::log::event!(
                    crate::log::Level::Warning,
                    { pid = pid },
                    "a semaphore's holder (pid {pid}) died holding slots: they are free again"
                );
                Err(Error::OwnerDied { pid })
            }
            None => Ok(()),
        }
    }

    /// Python's `acquire(block, timeout)`: takes a slot; with `block`, waits until one is free
    /// or `timeout` passes. `Ok(true)` when a slot was taken.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] (bounded semaphores) when slots of a dead process were recovered
    /// while waiting; they are free again and no slot was taken.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let taken = self.take(block, Deadline::after(timeout))?;
        if taken && self.bound() != 0 {
            self.record_taken();
        }
        Ok(taken)
    }

    super::acquire_forms!();

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
        self.acquire()?;
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
