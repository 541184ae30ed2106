//! A lock that a forked child can start afresh.
//!
//! `fork` copies only the calling thread: a lock another thread of the parent held at that
//! moment stays held in the child forever. A [`ForkLock`] lets the child replace the whole
//! lock with a new one; the parent's copy is left behind (never freed: it may be held, and in
//! a forked child freeing it would only dirty pages). Python does the same for its own locks
//! after a fork.

use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A `Mutex<T>` made on first use from `init`, that a forked child replaces with
/// [`ForkLock::reset`].
pub(crate) struct ForkLock<T> {
    current: AtomicPtr<Mutex<T>>,
    init: fn() -> T,
}

impl<T> ForkLock<T> {
    pub(crate) const fn new(init: fn() -> T) -> Self {
        ForkLock {
            current: AtomicPtr::new(std::ptr::null_mut()),
            init,
        }
    }

    /// The lock as it is now.
    pub(crate) fn get(&self) -> &Mutex<T> {
        let mut p = self.current.load(Ordering::Acquire);
        if p.is_null() {
            let fresh = Box::into_raw(Box::new(Mutex::new((self.init)())));
            p = match self.current.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => fresh,
                Err(first) => {
                    // SAFETY: `fresh` came from `Box::into_raw` just above and was never
                    // published, so this is its only owner.
                    drop(unsafe { Box::from_raw(fresh) });
                    first
                }
            };
        }
        // SAFETY: every pointer stored in `current` comes from `Box::into_raw` and is never
        // freed once stored (a replaced one is left behind on purpose), so it stays valid for
        // as long as `self`.
        unsafe { &*p }
    }

    /// In a child just forked (one thread): a new lock holding `value` replaces the one
    /// inherited, whoever held it.
    pub(crate) fn reset(&self, value: T) {
        let fresh = Box::into_raw(Box::new(Mutex::new(value)));
        self.current.store(fresh, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock held (here, by a guard we forget, as a thread of the parent would hold it at a
    /// fork) is replaced by a free one with the new value.
    #[test]
    fn a_held_lock_is_replaced() {
        static L: ForkLock<u32> = ForkLock::new(|| 7);
        assert_eq!(*L.get().lock().unwrap(), 7);
        std::mem::forget(L.get().lock().unwrap());
        assert!(L.get().try_lock().is_err());
        L.reset(9);
        assert_eq!(*L.get().try_lock().expect("free"), 9);
    }
}
