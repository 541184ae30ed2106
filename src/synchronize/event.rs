//! `Event`: a flag processes wait on.

use super::*;

/// A flag that processes can wait for: Python's `multiprocessing.Event`.
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::{Event, Process};
///
/// fn signal(started: Event) {
///     started.set();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let started = Event::new()?;
/// let mut p = Process::new(signal, (started.clone(),));
/// p.start()?;
/// assert!(started.wait_timeout(Duration::from_secs(10))); // set by the child
/// p.join()?;
/// started.clear();
/// assert!(!started.is_set());
/// # Ok(()) }
/// ```
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

    /// Waits until the flag is set (Python's `wait()`).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits until the flag is set or `timeout` passes (Python's `wait(timeout)`); returns the
    /// flag.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(timeout))
    }

    pub(crate) fn wait_until(&self, timeout: Option<Duration>) -> bool {
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
    /// Python's repr: `<multiprocess.Event at 0x7f3a1c000000 set>` (the address is where the
    /// shared flag is mapped in this process, as Python's is its object's), or `unset`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(
            f,
            "<multiprocess.Event at {:p} {state}>",
            self.region.base()
        )
    }
}
