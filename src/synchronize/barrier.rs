//! `Barrier`: parties that wait for each other, with an action run once per round.

use super::*;

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
        let code =
            sys::image::Code::of(self.0).map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        code.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = sys::image::Code::deserialize(deserializer)?;
        code.resolve()
            .map(Action)
            .map_err(|e| crate::wire::custom_de(e.to_string()))
    }
}

/// A meeting point for a fixed number of processes: Python's `multiprocessing.Barrier`.
///
/// [`wait`](Barrier::wait) returns once `parties` callers are waiting, giving each a distinct
/// index in `0..parties` (arrival order). The last to arrive first runs the action, if any.
///
/// ```standalone_crate
/// use multiprocess::{Barrier, Process};
///
/// /// Meets the others at the barrier; returns its place in the arrival order.
/// fn meet(barrier: Barrier) -> u32 {
///     barrier.wait().unwrap()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let barrier = Barrier::new(3)?;
/// let mut children: Vec<Process> = (0..2).map(|_| Process::new(meet, (barrier.clone(),))).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// let mut places = vec![barrier.wait()?]; // the third party: all three go on together
/// for p in &mut children {
///     p.join()?;
///     places.push(p.result::<u32>()?);
/// }
/// places.sort();
/// assert_eq!(places, [0, 1, 2]);
/// # Ok(()) }
/// ```
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
    /// the barrier breaks and that caller gets [`Error::Panicked`]. Python's
    /// `Barrier(parties, action, timeout)`:
    ///
    /// ```
    /// # fn main() -> multiprocess::Result<()> {
    /// use std::time::Duration;
    /// fn announce() {
    ///     println!("all here");
    /// }
    /// let barrier = multiprocess::Barrier::new(1)?
    ///     .action(announce)
    ///     .timeout(Some(Duration::from_secs(5)));
    /// assert_eq!(barrier.wait()?, 0); // the only party: runs the action, goes on
    /// # Ok(()) }
    /// ```
    pub fn action<F: Fn() + Copy + 'static>(mut self, action: F) -> Barrier {
        let _ = action; // F names the code: every process finds it by its type
        // A capturing closure fails the build here, at the caller's instance, with the fix.
        #[allow(clippy::let_unit_value)]
        let () = sys::image::NoCapture::<F>::CHECK;
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

    /// Waits until all parties have called `wait` (Python's `wait()`), at most the barrier's
    /// own [`timeout`](Barrier::timeout) if it has one. Returns this caller's index.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (aborted, reset while
    /// waiting, or a timed-out wait, which breaks it for everyone); [`Error::Panicked`] for the
    /// caller whose action panicked.
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait) bounded by `timeout` instead of the barrier's own (Python's
    /// `wait(timeout)`).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<u32> {
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
