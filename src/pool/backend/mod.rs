//! Where a pool's workers live, behind one seam: start a worker, send it orders, receive its
//! replies, check, kill and reap it. The supervisor decides; the driver calls these.
//!
//! Static dispatch (an enum, as crossbeam-channel's flavours): a call costs a match, not a
//! virtual call, and the hot paths inline.
//!
//! - [`local`]: worker processes on this machine, each with a pair of rings in shared memory,
//!   ringing the pool's doorbell after each reply.
//! - [`threads`]: workers as threads of this process over the same rings (for tests: no
//!   process starts, and a "kill" is a flag the worker obeys between tasks).
//! - `mpi` (cargo feature `mpi`): workers that are the ranks of an MPI job, over MPI messages.
//!
//! A backend whose workers live on other hosts fits the same calls: `alive` is then its own
//! liveness check (heartbeats), and deadlines and the requeue/fail policy stay in the
//! supervisor.

pub(crate) mod local;
#[cfg(all(feature = "mpi", unix))]
pub(crate) mod mpi;
pub(crate) mod threads;

use std::time::Duration;

use super::doorbell::Doorbell;
use super::protocol::{Args, Setup};
use super::result::copy_reply;
use super::worker::Link;
use crate::error::{Error, Result};

/// Each direction's channel per worker: orders up to this size are sent whole; longer ones
/// stream through (to an idle worker only: see `supervisor`).
pub(crate) const CHANNEL_BYTES: usize = 8 << 20;
/// How often a write streaming to a worker checks that it is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// A kind of worker.
pub(crate) enum Backend {
    Local(local::Local),
    // Built only by the crate's tests.
    #[cfg_attr(not(test), allow(dead_code))]
    Threads(threads::Threads),
    #[cfg(all(feature = "mpi", unix))]
    Mpi(mpi::Ranks),
}

/// One worker, as its backend holds it.
pub(crate) enum Worker {
    Local(local::LocalWorker),
    Threads(threads::ThreadWorker),
    #[cfg(all(feature = "mpi", unix))]
    Mpi(mpi::RankWorker),
}

impl Backend {
    /// Starts worker `n`, which first runs `setup`.
    pub(crate) fn start(&self, n: u64, setup: &Setup) -> Result<Worker> {
        match self {
            Backend::Local(b) => b.start(n, setup).map(Worker::Local),
            Backend::Threads(b) => b.start(n, setup).map(Worker::Threads),
            #[cfg(all(feature = "mpi", unix))]
            Backend::Mpi(b) => b.start(n, setup).map(Worker::Mpi),
        }
    }

    /// The doorbell its workers ring after each reply (`None`: its workers are polled, each
    /// by a reader of its own).
    pub(crate) fn doorbell(&self) -> Option<&Doorbell> {
        match self {
            Backend::Local(b) => Some(&b.bell),
            Backend::Threads(b) => Some(&b.bell),
            #[cfg(all(feature = "mpi", unix))]
            Backend::Mpi(_) => None,
        }
    }
}

impl Worker {
    /// Writes one order made of `parts`. Within the supervisor's credit it finds room at once
    /// (or the instant after the worker's reply: see `worker`); an order longer than the
    /// channel streams to an idle worker, which reads it meanwhile. Gives up with an error if
    /// the worker dies (checked every [`LIVENESS_CHECK`]).
    pub(crate) fn send(&self, parts: &[&[u8]]) -> Result<()> {
        #[cfg(all(feature = "mpi", unix))]
        if let Worker::Mpi(w) = self {
            return w.send(parts);
        }
        let Some(link) = self.link() else {
            return Err(Error::state("the pool worker has no channel"));
        };
        let gone = || !self.alive();
        loop {
            match link
                .tasks()
                .put_parts(parts, deadline(LIVENESS_CHECK), &gone)
            {
                Ok(true) => return Ok(()),
                Ok(false) if !gone() => {}
                Ok(false) => return Err(Error::state("the pool worker is gone")),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a task's order: `head`, then its arguments. A value still to be encoded goes
    /// straight into the worker's channel if it fits the free space now, else through a buffer
    /// (as [`send`](Worker::send) writes).
    pub(crate) fn send_order(&self, head: &[u8], args: &Args) -> Result<()> {
        let value = match args {
            Args::Encoded(bytes) => return self.send(&[head, bytes]),
            Args::Value(value) => value,
        };
        if let Some(link) = self.link() {
            if value.put_into(link.tasks(), head)? {
                return Ok(());
            }
        }
        let buf = value.encode_into(crate::wire::spare_buffer())?;
        // An MPI send keeps its buffer until it is done (given back at once, mostly).
        #[cfg(all(feature = "mpi", unix))]
        if let Worker::Mpi(w) = self {
            if let Some(buf) = w.send_owned(head, buf)? {
                crate::wire::recycle(buf);
            }
            return Ok(());
        }
        let sent = self.send(&[head, &buf]);
        crate::wire::recycle(buf);
        sent
    }

    /// The rings of a worker on this machine (`None` for a rank of an MPI job).
    fn link(&self) -> Option<&Link> {
        match self {
            Worker::Local(w) => Some(w.link()),
            Worker::Threads(w) => Some(w.link()),
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(_) => None,
        }
    }

    /// The next reply, waiting at most `wait`; `Ok(None)` if none came.
    pub(crate) fn recv(&self, wait: Duration) -> Result<Option<Vec<u8>>> {
        match self {
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.recv(wait),
            _ => match self.link() {
                Some(link) => link.replies().get_with(deadline(wait), |m| copy_reply(&m)),
                None => Ok(None),
            },
        }
    }

    /// Up to `max` replies already there; an error if its ring is broken (it died inside a
    /// message).
    pub(crate) fn recv_ready(&self, max: usize) -> Result<Vec<Vec<u8>>> {
        match self {
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => Ok(w.recv_ready(max)),
            _ => match self.link() {
                Some(link) => link
                    .replies()
                    .get_many_with(max, deadline(Duration::ZERO), |m| copy_reply(&m)),
                None => Ok(Vec::new()),
            },
        }
    }

    /// Whether it still runs.
    pub(crate) fn alive(&self) -> bool {
        match self {
            Worker::Local(w) => w.alive(),
            Worker::Threads(w) => w.alive(),
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.alive(),
        }
    }

    /// Kills it, and rings its bell: the pool's reader looks at it at once.
    pub(crate) fn kill(&self) {
        match self {
            Worker::Local(w) => w.kill(),
            Worker::Threads(w) => w.kill(),
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.kill(), // its reader polls
        }
        if let Some(link) = self.link() {
            link.ring();
        }
    }

    /// Asks it to skip task `seq` (its place among the tasks sent to it) if not started yet.
    pub(crate) fn revoke(&self, seq: u64) {
        match self {
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.revoke(seq),
            _ => {
                if let Some(link) = self.link() {
                    link.revoke(seq)
                }
            }
        }
    }

    /// Revokes task `seq` only if it has not started it: true if it will skip it (and reply
    /// `Cancelled`), false if it has started it. Workers on MPI ranks cannot tell: false.
    pub(crate) fn revoke_unstarted(&self, seq: u64) -> bool {
        match self {
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(_) => false,
            _ => self.link().is_some_and(|link| link.revoke_unstarted(seq)),
        }
    }

    /// The tasks it has started (its own count, wrapping).
    pub(crate) fn started(&self) -> u32 {
        match self {
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.started(),
            _ => self.link().map_or(0, Link::started),
        }
    }

    /// Its exit code once it has ended (and was reaped); `None` while it runs. Never waits.
    pub(crate) fn ended(&self) -> Option<i32> {
        match self {
            Worker::Local(w) => w.ended(),
            Worker::Threads(w) => w.ended(),
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.ended(),
        }
    }

    /// Kills it and returns its exit code, waiting only for the kill to take effect (a thread
    /// or a rank, which cannot be killed, counts as killed at once).
    pub(crate) fn reap_now(&self) -> i32 {
        match self {
            Worker::Local(w) => w.reap_now(),
            Worker::Threads(w) => w.reap_now(),
            #[cfg(all(feature = "mpi", unix))]
            Worker::Mpi(w) => w.reap_now(),
        }
    }

    /// Why it ended without ever taking its bootstrap (its program lacks `init()`), once
    /// reaped; `None` if it ran, or is no process of ours.
    pub(crate) fn start_failure(&self) -> Option<Error> {
        match self {
            Worker::Local(w) => w.start_failure(),
            _ => None,
        }
    }

    /// Its process id (`None` for a thread).
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Worker::Local(w) => w.pid(),
            _ => None,
        }
    }
}

fn deadline(wait: Duration) -> crate::synchronize::Deadline {
    crate::synchronize::Deadline::after(Some(wait))
}
