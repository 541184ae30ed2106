//! A lock that a forked child starts afresh.
//!
//! `fork` copies only the calling thread: a lock another thread of the parent held at that
//! moment stays held in the child forever. A [`ForkLock`] knows which process made its current
//! lock; used in another process (a forked child), it replaces the whole lock with a new one
//! (made from the parent's value if that lock is free, else by its `init`; or the child sets
//! the value it wants with [`ForkLock::reset`]). The parent's copy is left behind, never
//! freed: it may be held, and in a forked child freeing it would only dirty pages. Python does
//! the same for its own locks after a fork. Nothing is held across a fork: no lock word is
//! written around it (in the parent a page copied at each fork, issue 19).
//!
//! A [`StaticArc`] is a value a child replaces whole, read without a lock (this process's
//! record).

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

/// The lock of one process.
struct Slot<T> {
    pid: u32,
    lock: Mutex<T>,
}

/// A `Mutex<T>` made from `init` on first use, and replaced in a forked child: by
/// [`ForkLock::reset`], or (made with [`ForkLock::per_process`]) on the child's first use.
pub(crate) struct ForkLock<T> {
    current: AtomicPtr<Slot<T>>,
    init: fn() -> T,
    /// Whether a child's first use replaces the lock by itself, and what the child then
    /// starts with, made from the parent's value if that lock is free (taking what it
    /// inherits, or closing its copies of descriptors and starting empty).
    per_process: Option<fn(&mut T) -> T>,
}

impl<T> ForkLock<T> {
    /// A lock a forked child keeps (a copy of its parent's value) until it calls
    /// [`ForkLock::reset`].
    pub(crate) const fn new(init: fn() -> T) -> Self {
        ForkLock {
            current: AtomicPtr::new(std::ptr::null_mut()),
            init,
            per_process: None,
        }
    }

    /// A lock each process has its own of: a forked child's first use replaces its parent's
    /// copy with a lock holding `inherit`'s value, made from the parent's (for state that
    /// belongs to one process, as its connections), or `init`'s if a thread of the parent
    /// held the lock at the fork (its value may be half made).
    pub(crate) const fn per_process(init: fn() -> T, inherit: fn(&mut T) -> T) -> Self {
        ForkLock {
            current: AtomicPtr::new(std::ptr::null_mut()),
            init,
            per_process: Some(inherit),
        }
    }

    /// The lock (a fresh one, from `init`, on first use; and on a forked child's first use,
    /// for a per-process lock).
    pub(crate) fn get(&self) -> &Mutex<T> {
        let me = super::current_pid();
        let mut p = self.current.load(Ordering::Acquire);
        // SAFETY (the dereferences): every pointer stored in `current` comes from
        // `Box::into_raw` and is freed only by `Drop`, when nothing borrows `self` any more
        // (a replaced one is left behind on purpose), so it is valid while `self` is borrowed.
        while p.is_null() || (self.per_process.is_some() && unsafe { (*p).pid } != me) {
            let mut inherited = None;
            if let (false, Some(inherit)) = (p.is_null(), self.per_process) {
                // SAFETY: as above; the parent's slot is never freed.
                if let Ok(mut old) = unsafe { &(*p).lock }.try_lock() {
                    inherited = Some(inherit(&mut old));
                }
            }
            let fresh = Box::into_raw(Box::new(Slot {
                pid: me,
                lock: Mutex::new(inherited.unwrap_or_else(self.init)),
            }));
            match self
                .current
                .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => p = fresh,
                Err(now) => {
                    // SAFETY: `fresh` came from `Box::into_raw` just above and was never
                    // published, so this is its only owner.
                    drop(unsafe { Box::from_raw(fresh) });
                    p = now;
                }
            }
        }
        // SAFETY: as above.
        unsafe { &(*p).lock }
    }

    crate::sys::forked_child_code! {
        /// The lock, if this process made it: `None` where [`get`](Self::get) would make one (a
        /// per-process lock in a forked child, or one not used yet), without making it. For a
        /// child's exit, which has nothing to do with its parent's value and should not allocate
        /// (each heap page a forked child writes is a copy: issue 19).
        pub(crate) fn mine(&self) -> Option<&Mutex<T>> {
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: as in `get`: the slot is valid while `self` is borrowed.
            let slot = unsafe { p.as_ref() }?;
            (self.per_process.is_none() || slot.pid == super::current_pid()).then_some(&slot.lock)
        }
    }

    /// A new lock holding `value` replaces this process's, whoever held it (for a child just
    /// forked that wants a value of its own rather than `init`'s).
    pub(crate) fn reset(&self, value: T) {
        let fresh = Box::into_raw(Box::new(Slot {
            pid: super::current_pid(),
            lock: Mutex::new(value),
        }));
        self.current.store(fresh, Ordering::Release);
    }
}

impl<T> Drop for ForkLock<T> {
    fn drop(&mut self) {
        let p = *self.current.get_mut();
        if !p.is_null() {
            // SAFETY: the current slot came from `Box::into_raw`; `&mut self` means nothing
            // borrows it any more. (Slots replaced earlier stay behind, as documented.)
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ForkLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkLock").finish_non_exhaustive()
    }
}

/// An `Arc<T>` in a static, made by the `init` its readers pass on first use and replaced
/// whole by [`set`] (a child becoming the process it is); read without a lock, as a counted reference. A
/// replaced value is left behind, never freed: a reader may still hold it, and in a forked
/// child freeing it would write its parent's pages (each a copy: issue 19). A forked child
/// sees its parent's value until it sets its own (Python's `_current_process` too).
///
/// It holds a pointer alone, zero until first used; the one a forked child sets (`ME`) lies
/// with the other statics it writes (see `sys::forked_child_data`).
///
/// [`set`]: StaticArc::set
pub(crate) struct StaticArc<T> {
    current: AtomicPtr<T>,
}

impl<T> StaticArc<T> {
    /// Empty until first used.
    pub(crate) const fn new() -> Self {
        StaticArc {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The current value (from `init` on first use).
    pub(crate) fn get(&self, init: fn() -> Arc<T>) -> Arc<T> {
        let mut p = self.current.load(Ordering::Acquire);
        if p.is_null() {
            let fresh = Arc::into_raw(init()).cast_mut();
            match self.current.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => p = fresh,
                Err(now) => {
                    // SAFETY: `fresh` came from `Arc::into_raw` just above and was never
                    // published: this gives its one count back.
                    drop(unsafe { Arc::from_raw(fresh) });
                    p = now;
                }
            }
        }
        // SAFETY: every pointer stored in `current` came from `Arc::into_raw`, whose count is
        // never given back (a replaced value is left behind), so the value lives as long as
        // the program; taking one more count and owning it is sound.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Calls `f` with the current value (from `init` on first use), borrowed: no count is
    /// taken, so nothing of the value is written.
    pub(crate) fn with<R>(&self, init: fn() -> Arc<T>, f: impl FnOnce(&T) -> R) -> R {
        let mut p = self.current.load(Ordering::Acquire);
        if p.is_null() {
            drop(self.get(init));
            p = self.current.load(Ordering::Acquire);
        }
        // SAFETY: non-null after `get`; every pointer stored in `current` came from
        // `Arc::into_raw` and its count is never given back (a replaced value is left behind),
        // so the value lives as long as the program.
        f(unsafe { &*p })
    }

    /// Replaces the value (the old one is left behind, see above).
    pub(crate) fn set(&self, value: Arc<T>) {
        self.current
            .store(Arc::into_raw(value).cast_mut(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held lock (here, by a guard we forget, as a thread of the parent would hold it at a
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

    /// A lock made by another process (as a forked child sees its parent's) is replaced on
    /// first use: from `init` when it was held, else from the parent's value.
    #[test]
    fn another_process_lock_is_replaced_on_first_use() {
        let l: ForkLock<u32> = ForkLock::per_process(|| 3, |old| *old + 1);
        *l.get().lock().unwrap() = 5;
        std::mem::forget(l.get().lock().unwrap());
        // Pretend the current lock was made by another process.
        // SAFETY: the test owns `l`; the slot is valid (made by `get` above).
        unsafe { (*l.current.load(Ordering::Acquire)).pid ^= 1 };
        assert_eq!(*l.get().try_lock().expect("a fresh lock"), 3);
        // A free one passes its value on.
        *l.get().lock().unwrap() = 5;
        // SAFETY: as above.
        unsafe { (*l.current.load(Ordering::Acquire)).pid ^= 1 };
        assert_eq!(*l.get().try_lock().expect("a fresh lock"), 6);
    }

    /// A `StaticArc` is made on first use, hands out counted references, and a value set
    /// replaces it for later readers while earlier ones keep theirs.
    #[test]
    fn a_static_arc_is_replaced_whole() {
        static A: StaticArc<u32> = StaticArc::new();
        let one = || Arc::new(1);
        let first = A.get(one);
        assert_eq!(*first, 1);
        assert!(Arc::ptr_eq(&first, &A.get(|| Arc::new(3))));
        A.set(Arc::new(2));
        assert_eq!((*first, *A.get(one), A.with(one, |v| *v)), (1, 2, 2));
    }

    /// `mine` finds only this process's lock, and makes none.
    #[test]
    fn mine_is_only_this_process_lock() {
        let l: ForkLock<u32> = ForkLock::per_process(|| 3, |_| 3);
        assert!(l.mine().is_none());
        *l.get().lock().unwrap() = 5;
        assert_eq!(*l.mine().expect("made above").lock().unwrap(), 5);
        // SAFETY: as above.
        unsafe { (*l.current.load(Ordering::Acquire)).pid ^= 1 };
        assert!(l.mine().is_none());
        assert_eq!(*l.get().lock().unwrap(), 3);
        assert!(l.mine().is_some());
    }
}
