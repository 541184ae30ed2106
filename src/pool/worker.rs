//! A pool worker's loop, over its end of a [`Link`]: two rings in shared memory (orders in,
//! replies out; see `queues`) and a control block.
//!
//! The worker runs each task on its message where it lies in the ring (no copy out) and
//! releases the message right after sending the reply: so when the supervisor reads a reply,
//! the task's bytes are free, or are freed by the worker's very next step (the one wait of the
//! parent's writes on a worker, bounded by the liveness check: see `supervisor`).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::doorbell::Doorbell;
use super::protocol::{BYE, Code, Failure, INIT, Order, Reply, Setup, head, split};
use super::supervisor::REVOKE_SLOTS;
use crate::error::Result;
use crate::panics::catch_task;
use crate::queues::{Ring, RingPair};
use crate::registry;
use crate::synchronize::Deadline;
use crate::wire;

/// The control block's word counting the tasks a worker has started.
const STARTED: usize = 0;
/// The first of the revocation marks: mark `seq % REVOKE_SLOTS` holds `seq + 1` when the
/// supervisor wants task `seq` skipped.
const REVOKED: usize = 1;

/// How a worker and the parent talk: a ring of orders, a ring of replies, and a control block
/// in front of them (the count of tasks the worker has started, so the parent knows exactly
/// which task a dead worker held; and marks of tasks to skip), all in one region; and the
/// pool's doorbell, rung after each reply (where the parent's readers, a few for all its
/// workers, sleep).
#[derive(Clone)]
pub(crate) struct Link {
    rings: RingPair,
    bell: Doorbell,
    /// The worker's number (its bit in the doorbell).
    n: u64,
}

impl Link {
    /// A new link for worker `n` whose order ring holds `bytes` (the replies' ring the same),
    /// ringing `bell`.
    pub(crate) fn new(bytes: usize, bell: &Doorbell, n: u64) -> Result<Link> {
        let rings = RingPair::new(bytes, REVOKED + REVOKE_SLOTS)?;
        Ok(Link::assemble(rings, bell.clone(), n))
    }

    /// The link of worker `n` over `rings`: every publication in its replies' ring (a whole
    /// reply, or each part of one streamed through) rings its bell.
    fn assemble(mut rings: RingPair, bell: Doorbell, n: u64) -> Link {
        let ringing = bell.clone();
        rings
            .second
            .on_publish(std::sync::Arc::new(move || ringing.ring(n)));
        Link { rings, bell, n }
    }

    /// The orders' ring.
    pub(crate) fn tasks(&self) -> &Ring {
        &self.rings.first
    }

    /// The replies' ring.
    pub(crate) fn replies(&self) -> &Ring {
        &self.rings.second
    }

    /// Rings the worker's bell from the parent: the reader should look at this worker (it was
    /// killed). (Its replies ring it themselves: see [`Link::assemble`].)
    pub(crate) fn ring(&self) {
        self.bell.ring(self.n);
    }

    /// Lets go of the link's OS handle once its worker has it (the memory stays mapped): a
    /// pool of N workers then holds fewer descriptors, and every later spawn, whose exec closes
    /// each descriptor a parent holds, costs less (issue 19, W11).
    pub(crate) fn close_handles(&mut self) {
        self.rings.close_handles();
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        &self.rings.front()[i]
    }

    /// The tasks the worker has started (wrapping).
    pub(crate) fn started(&self) -> u32 {
        self.word(STARTED).load(Ordering::SeqCst)
    }

    /// Asks the worker to skip task `seq` if it has not started it.
    pub(crate) fn revoke(&self, seq: u64) {
        self.word(REVOKED + seq as usize % REVOKE_SLOTS)
            .store((seq as u32).wrapping_add(1), Ordering::SeqCst);
    }

    /// Asks the worker to skip task `seq` only if it has not started it: true if it will skip
    /// it, false if it has started it (the mark is then taken back, unless the worker took it
    /// first: then it skips the task after all, and this says true).
    pub(crate) fn revoke_unstarted(&self, seq: u64) -> bool {
        self.revoke(seq);
        let started = self.started();
        // Its count was raised after our mark was written: it reads the mark when it starts.
        if (started.wrapping_sub(seq as u32) as i32) <= 0 {
            return true;
        }
        let mark = (seq as u32).wrapping_add(1);
        self.word(REVOKED + seq as usize % REVOKE_SLOTS)
            .compare_exchange(mark, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
    }

    /// Worker side: counts task `seq` as started; whether it was revoked. (The count is
    /// raised before the mark is read, and the supervisor writes the mark before it concludes
    /// anything from the count: one of the two sees the other.)
    fn start(&self) -> bool {
        let seq = self.word(STARTED).fetch_add(1, Ordering::SeqCst);
        let mark = self
            .word(REVOKED + seq as usize % REVOKE_SLOTS)
            .swap(0, Ordering::SeqCst);
        mark == seq.wrapping_add(1)
    }
}

/// A link travels as its rings, its doorbell and its worker's number.
impl Serialize for Link {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        (&self.rings, &self.bell, self.n).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Link {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let (rings, bell, n) = <(RingPair, Doorbell, u64)>::deserialize(deserializer)?;
        Ok(Link::assemble(rings, bell, n))
    }
}

pub(crate) fn run(code: Code, args: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
    let trampoline = code.resolve().map_err(Failure::from_error)?;
    settle(catch_task(|| trampoline(args)))
}

fn settle(
    called: std::result::Result<Result<Vec<u8>>, String>,
) -> std::result::Result<Vec<u8>, Failure> {
    match called {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::from_error(e)),
        Err(panic) => Err(Failure::Panicked(panic)),
    }
}

/// Runs task `id` and replies. A worker process's value goes straight into the replies' ring
/// where it can (see `registry::replying_into`), else through [`reply`]. A thread worker's
/// `kill_flag` is checked after the call, and a killed one sends nothing (as a killed process
/// would): so its reply always waits for the call's end. `None`: killed; else whether the reply
/// went.
fn run_task(
    link: &Link,
    id: u64,
    code: Code,
    args: &[u8],
    kill_flag: Option<&dyn Fn() -> bool>,
) -> Option<bool> {
    let outcome = match (
        kill_flag,
        code.resolve(),
        head(&Reply { id, failure: None }),
    ) {
        (None, Ok(trampoline), Ok(h)) => {
            let (called, sent) =
                registry::replying_into(link.replies(), h, || catch_task(|| trampoline(args)));
            if sent {
                return Some(true);
            }
            settle(called)
        }
        _ => run(code, args),
    };
    if kill_flag.is_some_and(|k| k()) {
        return None;
    }
    Some(reply(link, id, outcome))
}

/// Sends a reply (which rings the bell). It waits for room as long as it takes: the parent has a
/// thread that reads every worker's replies as they come (and a worker dies with its parent).
fn reply(link: &Link, id: u64, outcome: std::result::Result<Vec<u8>, Failure>) -> bool {
    let (failure, payload) = match outcome {
        Ok(value) => (None, value),
        Err(f) => (Some(f), Vec::new()),
    };
    let sent = match head(&Reply { id, failure }) {
        Ok(h) => matches!(
            link.replies()
                .put_parts(&[&h, &payload], Deadline::after(None), &|| false),
            Ok(true)
        ),
        Err(_) => false,
    };
    wire::recycle(payload);
    sent
}

/// A pool worker process's life (see [`work`]). A daemonic process: it dies with its parent.
pub(crate) fn worker_main(link: Link, setup: Setup) {
    work(&link, &setup, None);
    // The process exits next: its exit unmaps the link's rings and the doorbell and closes
    // their descriptors at once, where dropping them first cost a `munmap` each (and a TLB
    // flush): a pool of 256 workers closed and joined 7% sooner (issue 19, W11). Nothing of
    // theirs needs a drop: everything the parent reads was published with the goodbye.
    std::mem::forget((link, setup));
}

/// How long a worker that can only be killed by a flag waits for an order at a time.
const KILL_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// A pool worker's life: run the initializer, then tasks until told to stop, or after
/// `maxtasks` tasks; say goodbye. `killed` is for a worker that cannot be killed from outside
/// (a thread): once it says so, the worker ends at its next step without another word, as a
/// killed process would.
pub(crate) fn work(link: &Link, setup: &Setup, killed: Option<&dyn Fn() -> bool>) {
    let init = setup.run_initializer(run);
    let init_failed = init.is_err();
    if reply(link, INIT, init) && !init_failed {
        serve(link, setup.maxtasks, killed);
    }
    if !killed.is_some_and(|k| k()) {
        reply(link, BYE, Ok(Vec::new()));
    }
}

fn serve(link: &Link, maxtasks: Option<u64>, kill_flag: Option<&dyn Fn() -> bool>) {
    let killable = kill_flag.is_some();
    let killed = || kill_flag.is_some_and(|k| k());
    let mut done = 0u64;
    // Each task runs on its message where it lies in the ring; only this worker reads its
    // ring, so holding the ring's consumer side meanwhile blocks nobody. A worker process
    // waits for an order without a deadline: the parent sends one, or `Stop`, or kills it,
    // or dies (and this daemonic worker with it). A thread worker checks its flag meanwhile.
    let handle = |m: std::borrow::Cow<'_, [u8]>| -> Option<bool> {
        let Ok((order, args)) = split::<Order>(&m) else {
            return Some(false);
        };
        let Order::Task { id, code } = order else {
            return Some(false); // Stop
        };
        if link.start() {
            return (!killed()).then(|| reply(link, id, Err(Failure::Cancelled)));
        }
        run_task(link, id, code, args, kill_flag)
    };
    loop {
        let wait = Deadline::after(killable.then_some(KILL_CHECK));
        match link.tasks().get_with(wait, handle) {
            Ok(Some(Some(true))) => {
                done += 1;
                if maxtasks == Some(done) {
                    return;
                }
            }
            Ok(None) if !killed() => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Link;

    /// `revoke_unstarted` says true exactly when the worker skips the task: before the worker
    /// reaches it, true and skipped; after it started it, false, and the mark is taken back
    /// (the task after it is not skipped by mistake either).
    #[test]
    fn revoke_unstarted_agrees_with_the_worker() {
        let bell = super::Doorbell::new(1).expect("doorbell");
        let link = Link::new(4096, &bell, 0).expect("link");
        assert!(link.revoke_unstarted(0), "not started: revoked");
        assert!(link.start(), "the worker skips task 0");
        assert!(!link.start(), "the worker runs task 1");
        assert!(!link.revoke_unstarted(1), "started: not revoked");
        let mark = link
            .word(super::REVOKED + 1)
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(mark, 0, "the mark is taken back");
        assert!(!link.start(), "task 2 runs (no mark left for it)");
        assert!(link.revoke_unstarted(3));
        assert!(link.start(), "task 3 skipped");
    }
}
