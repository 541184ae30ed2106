//! A serving rank's side: a rank other than 0 (or a spawned one) serves one pool worker after
//! another for rank 0, until rank 0 ends (see the parent module's docs).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mpi::Tag;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::Communicator;
use mpi::traits::{Destination, Source};

use super::super::super::protocol::{BYE, INIT, Order, Reply, Setup, head, split};
use super::super::super::worker::run;
use super::{
    ALIVE, BEAT, DECIDED, DECISION_WAIT, FINISH, FINISHED, FIRST_BACKOFF, ORDER, ORDER_BODY, REPLY,
    REPLY_BODY, REVOKE, SETUP, STOP, lock, next_pause, wait_a_little,
};
use crate::sys::image;
use crate::sys::mpi::Comm;
use crate::wire;

/// A rank other than 0: serves one pool worker after another until rank 0 says it ends. It
/// waits by polling with a backoff to 1 ms, not in a blocking probe: Open MPI's blocking calls
/// spin, and an idle rank would take a CPU from the ranks that work.
///
/// At the end, says it is ready to finish and waits for rank 0's decision: true to finish MPI
/// with every rank, false to exit without (see [`finish`](super::finish)).
pub(super) fn serve_rank(comm: &'static Comm) -> bool {
    let mut poll = Poll::new();
    loop {
        let Some((bytes, tag)) = poll.next(comm) else {
            continue;
        };
        match tag {
            SETUP if work(comm, &bytes) => break,
            FINISH => break,
            _ => {} // a worker done, or left over from a worker given up
        }
    }
    comm.process_at_rank(0).send_with_tag(&[0u8][..], FINISHED);
    let until = Instant::now() + DECISION_WAIT;
    while Instant::now() < until {
        if let Some((bytes, DECIDED)) = poll.next(comm) {
            return bytes == [0];
        }
    }
    false
}

/// A serving rank's wait for rank 0's next message: one probe a call, pausing as
/// [`next_pause`] says when there is none.
struct Poll {
    pause: Duration,
    last: Instant,
}

impl Poll {
    fn new() -> Poll {
        Poll {
            pause: FIRST_BACKOFF,
            last: Instant::now(),
        }
    }

    /// Rank 0's next message and its tag, if one is there (else after a pause: `None`).
    fn next(&mut self, comm: &Comm) -> Option<(Vec<u8>, Tag)> {
        let Some(probed) = comm.process_at_rank(0).immediate_matched_probe() else {
            wait_a_little(self.pause, self.last);
            self.pause = next_pause(self.pause, self.last);
            return None;
        };
        (self.pause, self.last) = (FIRST_BACKOFF, Instant::now());
        let (bytes, status) = probed.matched_receive_vec::<u8>();
        Some((bytes, status.tag()))
    }
}

/// What a worker rank's two threads share.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    cond: Condvar,
}

#[derive(Default)]
struct InboxState {
    /// Each order's header and body.
    orders: VecDeque<(Vec<u8>, Vec<u8>)>,
    revoked: HashSet<u64>,
    finish: bool,
}

/// One pool worker on this rank: checks the build, runs the initializer, then the tasks, as a
/// local worker does (see `worker`), until `Stop` (or rank 0 ending: then true).
fn work(comm: &'static Comm, setup: &[u8]) -> bool {
    let reply =
        |id: u64, outcome: std::result::Result<Vec<u8>, super::super::super::protocol::Failure>| {
            let (failure, payload) = match outcome {
                Ok(v) => (None, v),
                Err(f) => (Some(f), Vec::new()),
            };
            if let Ok(h) = head(&Reply { id, failure }) {
                let root = comm.process_at_rank(0);
                root.send_with_tag(&h[..], REPLY);
                root.send_with_tag(&payload[..], REPLY_BODY);
            }
        };
    let setup = match wire::decode::<(u64, Setup)>(setup) {
        Ok((identity, _)) if identity != image::identity() => Err(format!(
            "MPI rank {} runs a different build of the program than rank 0: every rank must run \
             the same executable",
            comm.rank()
        )),
        Ok((_, setup)) => Ok(setup),
        Err(e) => Err(e.to_string()),
    };
    let setup = match setup {
        Ok(s) => s,
        Err(why) => {
            reply(
                INIT,
                Err(super::super::super::protocol::Failure::Other(why)),
            );
            reply(BYE, Ok(Vec::new()));
            return false;
        }
    };
    let init = setup.run_initializer(run);
    let init_failed = init.is_err();
    reply(INIT, init);
    if !init_failed {
        let inbox = Arc::new(Inbox::default());
        let done = Arc::new(AtomicBool::new(false));
        let io = {
            let (inbox, done) = (inbox.clone(), done.clone());
            std::thread::spawn(move || take_orders(comm, &inbox, &done))
        };
        run_tasks(&inbox, setup.maxtasks, &reply);
        done.store(true, Ordering::SeqCst);
        let _ = io.join();
        if lock(&inbox.state).finish {
            return true;
        }
    }
    reply(BYE, Ok(Vec::new()));
    false
}

/// The worker's tasks, in order, until `Stop`, `maxtasks` or rank 0 ending.
fn run_tasks(
    inbox: &Inbox,
    maxtasks: Option<u64>,
    reply: &dyn Fn(u64, std::result::Result<Vec<u8>, super::super::super::protocol::Failure>),
) {
    let mut seq = 0u64;
    loop {
        let (header, args) = {
            let mut st = lock(&inbox.state);
            loop {
                if let Some(m) = st.orders.pop_front() {
                    break m;
                }
                if st.finish {
                    return;
                }
                st = inbox.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Ok((Order::Task { id, code }, _)) = split::<Order>(&header) else {
            return; // Stop, or garbage
        };
        let revoked = lock(&inbox.state).revoked.remove(&seq);
        seq += 1;
        let outcome = if revoked {
            Err(super::super::super::protocol::Failure::Cancelled)
        } else {
            run(code, &args)
        };
        reply(id, outcome);
        if maxtasks == Some(seq) {
            return;
        }
    }
}

/// The body that follows an order's header (see [`ORDER`]); `None` if it does not come within
/// a minute (rank 0 died between the two).
fn take_body(comm: &Comm) -> Option<Vec<u8>> {
    let root = comm.process_at_rank(0);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = root.immediate_matched_probe_with_tag(ORDER_BODY) {
            return Some(body.matched_receive_vec::<u8>().0);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::yield_now();
    }
}

/// The worker's second thread: takes every message from rank 0 as it comes, and says it is
/// alive every [`BEAT`].
fn take_orders(comm: &Comm, inbox: &Inbox, done: &AtomicBool) {
    let root = comm.process_at_rank(0);
    let mut last_beat = Instant::now();
    let mut poll = Poll::new();
    while !done.load(Ordering::SeqCst) {
        if last_beat.elapsed() >= BEAT {
            root.send_with_tag(&[0u8][..], ALIVE);
            last_beat = Instant::now();
        }
        let Some((bytes, tag)) = poll.next(comm) else {
            continue;
        };
        // An order's body follows its header (rank 0 sends them one after the other).
        let body = match tag {
            ORDER => match take_body(comm) {
                Some(body) => Some(body),
                None => return, // rank 0 is gone
            },
            _ => None,
        };
        let mut st = lock(&inbox.state);
        match tag {
            ORDER => st.orders.push_back((bytes, body.unwrap_or_default())),
            STOP => st.orders.push_back((bytes, Vec::new())),
            REVOKE => {
                if let Ok(b) = <[u8; 8]>::try_from(&bytes[..]) {
                    st.revoked.insert(u64::from_le_bytes(b));
                }
            }
            FINISH => st.finish = true,
            _ => {}
        }
        drop(st);
        inbox.cond.notify_all();
    }
}
