//! The list of started children not yet reaped (Python's `_children`), and its reaping
//! (`_cleanup`, `active_children`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::{Process, Shared, lock};
use crate::sys;
use crate::sys::fork_lock::ForkLock;

/// Started children not yet reaped (Python's `_children`). Per process: a forked child starts
/// with an empty list of its own on first use, and writes nothing of its parent's (see
/// [`forget_inherited_children`]).
pub(super) static CHILDREN: ForkLock<Vec<Arc<Shared>>> =
    ForkLock::per_process(Vec::new, |_| Vec::new());

/// The locked list of children.
pub(crate) type ChildrenGuard = MutexGuard<'static, Vec<Arc<Shared>>>;

/// Whether this process's last child left the list by a join that left it empty, none reaped
/// since by [`reap_finished`]: a program that starts and joins its children one at a time
/// (Python's `p.start(); p.join()`). Its next fork gives the CPU up right after (see
/// `start::fork`). Written only when it changes: each write is a page copied while a child
/// that shares it runs (issue 19).
static ONE_AT_A_TIME: AtomicBool = AtomicBool::new(false);

/// Whether this process starts and joins its children one at a time (see [`ONE_AT_A_TIME`]).
pub(super) fn one_at_a_time() -> bool {
    ONE_AT_A_TIME.load(Ordering::Relaxed)
}

/// Notes how a child left the list: by a join that left it empty (`true`), or reaped by
/// [`reap_finished`] (`false`: a fan-out's start reaps the children that ended meanwhile, and
/// must fork on while the others run).
pub(super) fn note_left(joined_last: bool) {
    if ONE_AT_A_TIME.load(Ordering::Relaxed) != joined_last {
        ONE_AT_A_TIME.store(joined_last, Ordering::Relaxed);
    }
}

/// Drops `shared` from the children list.
pub(super) fn forget_child(shared: &Arc<Shared>) {
    lock(CHILDREN.get()).retain(|c| !Arc::ptr_eq(c, shared));
}

/// Reaps every finished child (Python's `_cleanup`). Where the OS names the children that
/// ended (Linux), those are reaped one by one and the others are not looked at; then only the
/// fork server's children (whose exits come on their status pipes) are: a fan-out's start
/// of its k-th child no longer looks at k children while the earlier ones end (issue 19, W11
/// fork). A child the OS names that is not in our list (another part of the program's, or one
/// named twice) sends us to the scan of every child, as where the OS cannot say.
///
/// The candidates' sentinels are looked at in one wait (one `poll` on Unix) and only the
/// ready ones are polled: a child reaped elsewhere or ended shows as ready, a running one costs
/// nothing more (a fork server's k served children used to cost 2k system calls a `start`).
pub(super) fn reap_finished() {
    // No child of ours: none to reap (and no look at what the OS says, one system call).
    if lock(CHILDREN.get()).is_empty() {
        return;
    }
    // Inline: an allocation and its free at every start of a fan-out are pages written
    // between two forks (issue 19, W11).
    let mut reaped = smallvec::SmallVec::<[u32; 8]>::new();
    let all = loop {
        let pid = match sys::ended_child() {
            sys::Ended::None => break false,
            sys::Ended::Unknown => break true,
            sys::Ended::Pid(pid) => pid,
        };
        let named = lock(CHILDREN.get())
            .iter()
            .find(|c| c.pid.load(Ordering::Relaxed) == pid)
            .cloned();
        let Some(child) = named.filter(|_| !reaped.contains(&pid)) else {
            break true;
        };
        reaped.push(pid);
        if matches!(child.poll_exit(Some(Duration::ZERO)), Ok(Some(_)) | Err(_)) {
            forget_child(&child);
            note_left(false);
        }
    };
    let children: Vec<_> = lock(CHILDREN.get())
        .iter()
        .filter(|c| all || c.served.load(Ordering::Relaxed))
        .cloned()
        .collect();
    if children.is_empty() {
        return;
    }
    let sentinels: Vec<_> = children.iter().map(|c| c.sentinel_now()).collect();
    let handles: Vec<_> = sentinels
        .iter()
        .flatten()
        .map(|s| sys::borrow_handle(s))
        .collect();
    // If the look itself fails, fall back to polling every child.
    let ready = sys::wait_readable(&handles, Some(Duration::ZERO)).ok();
    let mut ready = ready.into_iter().flatten();
    for (c, sentinel) in children.iter().zip(&sentinels) {
        // A child with no sentinel (not started, closed, none opened yet) is looked at.
        let look = sentinel.is_none() || ready.next().unwrap_or(true);
        if look && matches!(c.poll_exit(Some(Duration::ZERO)), Ok(Some(_)) | Err(_)) {
            forget_child(c);
            note_left(false);
        }
    }
}

/// `multiprocessing.active_children()`: the started children that have not ended, after reaping
/// those that have.
pub fn active_children() -> Vec<Process> {
    reap_finished();
    lock(CHILDREN.get())
        .iter()
        .map(|s| Process {
            shared: Arc::clone(s),
            context: None,
        })
        .collect()
}

/// In a forked child: let go of the parent's channels to its children (a copy here would keep
/// each open after the parent's end: its child's `parent_process()` and the watch that ends a
/// daemonic child with its parent would not see it go) and forget the children. Their objects
/// are read, never written, nor is the list (its lock stays as the fork found it, held: this
/// process's first use of [`CHILDREN`] makes a list of its own): every page a forked child
/// writes is copied, and a fan-out's k-th child would copy the pages of k siblings (issue 19,
/// W11 fork). Each descriptor's number stays taken by the null device
/// (`sys::release_inherited`), so that the object which owns it, closing it here later, closes
/// nothing else; the objects act as closed here (`Shared::look`, `Shared::signal`: another
/// process's children).
pub(crate) fn forget_inherited_children(list: ChildrenGuard) {
    for c in list.iter() {
        sys::release_inherited(c.channel.load(Ordering::Relaxed));
    }
    std::mem::forget(list);
}
