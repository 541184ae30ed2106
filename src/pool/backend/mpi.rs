//! Pool workers that are MPI ranks (cargo feature `mpi`), as mpi4py.futures' SPMD mode: the
//! program is started by `mpirun -n N` (or `srun`); [`init`](crate::init) lets rank 0 run
//! `main` and turns every other rank into a server of pool workers, until rank 0 ends.
//!
//! Messages between rank 0 and a rank are MPI point-to-point messages whose bytes are the
//! pool's own (the orders and replies the local workers read from their rings), tagged by kind.
//! Rank 0 polls (an immediate matched probe with a backoff, as mpi4py does: see [`next_pause`]) so that every
//! wait has a deadline; a rank has a second thread that takes its orders at once (so a send from
//! rank 0 never waits for a task to end) and says it is alive every [`BEAT`].
//!
//! What a rank cannot do is be killed from here: a worker given up (a time limit, a cancel, a
//! silence longer than the pool's limit, [`SILENCE`] by default) is never given work again; the pool goes on with the
//! others (its replacement cannot start: no rank is free). A rank that dies is noticed by its
//! silence; MPI errors return instead of aborting the job (`sys::mpi::errors_return`), and the
//! job must be started so that it survives a dead rank (`mpirun --mca orte_enable_recovery 1`).
//! Open MPI 4 cannot finalise a job that lost a rank, so rank 0 then ends it with
//! `MPI_Abort(0)` (see [`finish`]).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mpi::Tag;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{Destination, Equivalence, Source};

use super::super::protocol::{BYE, INIT, NUDGE, Order, Reply, Setup, head, split};
use super::super::result::reply_buffer;
use super::super::worker::run;
use crate::error::{Error, Result};
use crate::sys::image;
use crate::wire;

/// Rank 0 → rank: start a pool worker (the build's identity, then the [`Setup`]).
const SETUP: Tag = 1;
/// Rank 0 → rank: an order's header (as the pool's rings carry it), followed at once by an
/// [`ORDER_BODY`] message: the task's arguments (sent as they lie, not joined to the header).
const ORDER: Tag = 2;
const ORDER_BODY: Tag = 5;
/// Rank 0 → rank: stop after the current task (a worker given up).
const STOP: Tag = 6;
/// Rank 0 → rank: skip the task sent at this place (a `u64`, little-endian) if not started.
const REVOKE: Tag = 3;
/// Rank 0 → rank: rank 0 is ending; finish MPI and exit.
const FINISH: Tag = 4;
/// Rank → rank 0: a reply's header, followed at once by a [`REPLY_BODY`] message: the value.
const REPLY: Tag = 10;
const REPLY_BODY: Tag = 12;
/// Rank → rank 0: alive.
const ALIVE: Tag = 11;

/// How often a serving rank says it is alive.
const BEAT: Duration = Duration::from_secs(1);
/// A worker rank not heard from for this long is given up.
pub(crate) const SILENCE: Duration = Duration::from_secs(10);
/// The first pause between two polls; it doubles up to [`BUSY_BACKOFF`] while messages came in
/// the last [`BUSY`], then up to [`IDLE_BACKOFF`]. A sender of a large message waits (spinning,
/// in Open MPI) until the receiver probes, so a busy pool polls often; an idle one rarely, to
/// cost little CPU. (With a 1 ms cap throughout, W9's map ran at ~50 M items/s; with 50 µs while
/// busy, ~80 M.)
const FIRST_BACKOFF: Duration = Duration::from_micros(10);
const BUSY: Duration = Duration::from_millis(10);
const BUSY_BACKOFF: Duration = Duration::from_micros(50);
const IDLE_BACKOFF: Duration = Duration::from_millis(1);

/// Pauses between two polls: while messages flow (the last at `last`), only yields the CPU
/// (a sleep shorter than the kernel's timer slack, 50 µs, lasts ~100 µs); else sleeps `pause`.
fn wait_a_little(pause: Duration, last: Instant) {
    if last.elapsed() < BUSY {
        std::thread::yield_now();
    } else {
        std::thread::sleep(pause);
    }
}

/// The pause after `pause`, the last message having come at `last`.
fn next_pause(pause: Duration, last: Instant) -> Duration {
    let cap = if last.elapsed() < BUSY {
        BUSY_BACKOFF
    } else {
        IDLE_BACKOFF
    };
    (pause * 2).min(cap)
}

/// This process's MPI environment, once initialised (rank 0 keeps it until it ends).
static UNIVERSE: Mutex<Option<mpi::environment::Universe>> = Mutex::new(None);
/// The worker ranks not serving a pool now, nor given up.
static FREE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// The number of ranks in the job.
static SIZE: Mutex<i32> = Mutex::new(0);
/// Ranks given up for silence: dead, or cut off.
static LOST: Mutex<Vec<i32>> = Mutex::new(Vec::new());

use crate::sys::lock;

/// Whether a launcher of MPI jobs started this process (Open MPI's `mpirun`, MPICH's Hydra,
/// Slurm's `srun` with PMI or PMIx).
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Called by `init`: in a program started by an MPI launcher, initialises MPI; rank 0 returns
/// (to run `main`), every other rank serves pool workers and exits when rank 0 ends.
pub(crate) fn enter() {
    if !launched_by_mpi() {
        return;
    }
    let Some((universe, threading)) = mpi::initialize_with_threading(mpi::Threading::Multiple)
    else {
        return; // initialised already
    };
    if threading != mpi::Threading::Multiple {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "multiprocess: the MPI library gives threading level {threading:?}; a pool over MPI \
             ranks needs MPI_THREAD_MULTIPLE"
        );
        universe.world().abort(1);
    }
    crate::sys::mpi::errors_return();
    let world = universe.world();
    if world.rank() == 0 {
        *lock(&FREE) = (1..world.size()).rev().collect();
        *lock(&SIZE) = world.size();
        *lock(&UNIVERSE) = Some(universe);
        return;
    }
    serve_rank(&world);
    drop(universe); // MPI_Finalize
    crate::sys::exit_now(0);
}

/// Called at the end of rank 0: tells every other rank to finish (one still running a task
/// finishes it first), then finishes MPI. If a rank was lost, `MPI_Finalize` would wait for it
/// forever (Open MPI 4 has no failure notification): the job ends with `MPI_Abort` instead,
/// with code 0, after everything was delivered and printed.
pub(crate) fn finish() {
    let Some(universe) = lock(&UNIVERSE).take() else {
        return;
    };
    let world = universe.world();
    let lost = lock(&LOST).clone();
    for rank in (1..*lock(&SIZE)).filter(|r| !lost.contains(r)) {
        world
            .process_at_rank(rank)
            .send_with_tag(&[0u8][..], FINISH);
    }
    lock(&FREE).clear();
    if !lost.is_empty() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let _ = writeln!(
            std::io::stderr(),
            "multiprocess: MPI ranks {lost:?} were lost; ending the job with MPI_Abort(0)"
        );
        world.abort(0);
    }
    drop(universe);
}

/// The number of worker ranks free now (0 outside an MPI job, or on a rank other than 0).
pub(crate) fn free_ranks() -> usize {
    lock(&FREE).len()
}

// ---------------------------------------------------------------------------------------------
// Rank 0's side

/// Workers on the MPI ranks.
pub(crate) struct Ranks {
    /// How long a rank may be silent before it is given up.
    pub(crate) silence: Duration,
}

/// One worker rank, as rank 0 sees it.
pub(crate) struct RankWorker {
    rank: i32,
    silence: Duration,
    /// Given up (a kill): never given work again.
    given_up: AtomicBool,
    /// It said goodbye: free for another pool.
    bye: AtomicBool,
    heard: Mutex<Instant>,
    /// Tasks sent, and tasks answered (each counted once).
    sent: AtomicU32,
    answered: AtomicU32,
}

impl Ranks {
    pub(crate) fn start(&self, _n: u64, setup: &Setup) -> Result<RankWorker> {
        let silence = self.silence;
        if lock(&UNIVERSE).is_none() {
            return Err(Error::state(
                "a Pool over MPI ranks needs the program started by an MPI launcher (mpirun -n N, \
                 srun) and multiprocess::init() first in main",
            ));
        }
        let rank = lock(&FREE).pop().ok_or_else(|| {
            Error::state("no MPI rank is free (a pool over MPI has at most one worker a rank)")
        })?;
        let message = wire::encode(&(image::identity(), setup))?;
        world()
            .process_at_rank(rank)
            .send_with_tag(&message[..], SETUP);
        Ok(RankWorker {
            rank,
            silence,
            given_up: AtomicBool::new(false),
            bye: AtomicBool::new(false),
            heard: Mutex::new(Instant::now()),
            sent: AtomicU32::new(0),
            answered: AtomicU32::new(0),
        })
    }
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl RankWorker {
    /// Sends one order made of `parts` (the rank takes it at once: see the module docs).
    pub(crate) fn send(&self, parts: &[&[u8]]) -> Result<()> {
        if self.given_up.load(Ordering::SeqCst) {
            return Err(Error::state("the pool worker is gone"));
        }
        let (head, body): (&[u8], std::borrow::Cow<'_, [u8]>) = match parts {
            [] => return Ok(()),
            [head] => (head, std::borrow::Cow::Borrowed(&[])),
            [head, body] => (head, std::borrow::Cow::Borrowed(body)),
            [head, rest @ ..] => (head, std::borrow::Cow::Owned(rest.concat())),
        };
        if matches!(split::<Order>(head), Ok((Order::Task { .. }, _))) {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        // One writer a worker at a time (the supervisor's rule), so each body follows its
        // header in this rank's stream of ORDER_BODY messages.
        let rank = world();
        let rank = rank.process_at_rank(self.rank);
        rank.send_with_tag(head, ORDER);
        rank.send_with_tag(&body[..], ORDER_BODY);
        Ok(())
    }

    /// Takes one message from the rank if one is there: a reply, or `None` (an "alive" is
    /// noted and dropped).
    fn poll(&self) -> Option<Vec<u8>> {
        loop {
            let world = world();
            let rank = world.process_at_rank(self.rank);
            let (header, status) = rank.immediate_matched_probe()?.matched_receive_vec::<u8>();
            *lock(&self.heard) = Instant::now();
            if status.tag() != REPLY {
                continue;
            }
            // The value follows (sent right after by the same thread of the rank): received
            // after the header in a buffer given back by a dropped result (no join, no fresh
            // pages each time).
            let until = Instant::now() + self.silence;
            let (message, probed) = loop {
                if let Some(body) = rank.immediate_matched_probe_with_tag(REPLY_BODY) {
                    break body;
                }
                if Instant::now() >= until {
                    self.given_up.store(true, Ordering::SeqCst);
                    lock(&LOST).push(self.rank);
                    return None;
                }
                std::thread::yield_now();
            };
            let len = usize::try_from(probed.count(u8::equivalent_datatype())).unwrap_or(0);
            let mut bytes = reply_buffer(header.len() + len);
            bytes[..header.len()].copy_from_slice(&header);
            message.matched_receive_into(&mut bytes[header.len()..]);
            if let Ok((reply, _)) = split::<Reply>(&bytes) {
                match reply.id {
                    BYE => self.bye.store(true, Ordering::SeqCst),
                    INIT | NUDGE => {}
                    _ => {
                        self.answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            return Some(bytes);
        }
    }

    /// The next reply, waiting at most `wait`; `Ok(None)` if none came.
    pub(crate) fn recv(&self, wait: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + wait;
        let mut pause = FIRST_BACKOFF;
        loop {
            if self.given_up.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if let Some(bytes) = self.poll() {
                return Ok(Some(bytes));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            wait_a_little(pause.min(deadline - now), *lock(&self.heard));
            pause = next_pause(pause, *lock(&self.heard));
        }
    }

    /// Up to `max` replies already there.
    pub(crate) fn recv_ready(&self, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.poll() {
                Some(bytes) => out.push(bytes),
                None => break,
            }
        }
        out
    }

    /// Not given up, and heard from within the pool's silence limit (it says so every
    /// [`BEAT`]). A silent
    /// rank is given up for good, and counted lost (see [`finish`]).
    pub(crate) fn alive(&self) -> bool {
        if self.given_up.load(Ordering::SeqCst) {
            return false;
        }
        if lock(&self.heard).elapsed() < self.silence {
            return true;
        }
        if !self.given_up.swap(true, Ordering::SeqCst) {
            lock(&LOST).push(self.rank);
        }
        false
    }

    /// Gives it up: a rank cannot be killed from here (see the module docs). It is told to
    /// stop after its current task (it then waits, idle, for the end of rank 0).
    pub(crate) fn kill(&self) {
        if !self.given_up.swap(true, Ordering::SeqCst) {
            if let Ok(stop) = super::super::protocol::OrderHead::new(&Order::Stop) {
                world()
                    .process_at_rank(self.rank)
                    .send_with_tag(stop.as_bytes(), STOP);
            }
        }
    }

    pub(crate) fn revoke(&self, seq: u64) {
        if !self.given_up.load(Ordering::SeqCst) {
            world()
                .process_at_rank(self.rank)
                .send_with_tag(&seq.to_le_bytes()[..], REVOKE);
        }
    }

    /// The tasks it has started, as far as rank 0 can tell: those answered, and the next one if
    /// any is unanswered (a rank runs its tasks in order, and takes the next at once).
    pub(crate) fn started(&self) -> u32 {
        let answered = self.answered.load(Ordering::SeqCst);
        let sent = self.sent.load(Ordering::SeqCst);
        answered + u32::from(sent > answered)
    }

    /// Waits up to `grace` for its goodbye; a rank that said it is free for another pool (exit
    /// code 0); one given up or silent is not (-9, as a killed worker).
    pub(crate) fn reap(&self, grace: Duration) -> i32 {
        let until = Instant::now() + grace;
        while !self.bye.load(Ordering::SeqCst)
            && !self.given_up.load(Ordering::SeqCst)
            && Instant::now() < until
        {
            let _ = self.recv(Duration::from_millis(10));
        }
        if self.bye.load(Ordering::SeqCst) && !self.given_up.load(Ordering::SeqCst) {
            lock(&FREE).push(self.rank);
            0
        } else {
            self.given_up.store(true, Ordering::SeqCst);
            -9
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A serving rank's side

/// A rank other than 0: serves one pool worker after another until rank 0 says it ends. It
/// waits by polling with a backoff to 1 ms, not in a blocking probe: Open MPI's blocking calls
/// spin, and an idle rank would take a CPU from the ranks that work.
fn serve_rank(world: &SimpleCommunicator) {
    let mut poll = Poll::new();
    loop {
        let Some((bytes, tag)) = poll.next(world) else {
            continue;
        };
        match tag {
            SETUP if work(world, &bytes) => return,
            FINISH => return,
            _ => {} // a worker done, or left over from a worker given up
        }
    }
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
    fn next(&mut self, world: &SimpleCommunicator) -> Option<(Vec<u8>, Tag)> {
        let Some(probed) = world.process_at_rank(0).immediate_matched_probe() else {
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
fn work(world: &SimpleCommunicator, setup: &[u8]) -> bool {
    let reply =
        |id: u64, outcome: std::result::Result<Vec<u8>, super::super::protocol::Failure>| {
            let (failure, payload) = match outcome {
                Ok(v) => (None, v),
                Err(f) => (Some(f), Vec::new()),
            };
            if let Ok(h) = head(&Reply { id, failure }) {
                let root = world.process_at_rank(0);
                root.send_with_tag(&h[..], REPLY);
                root.send_with_tag(&payload[..], REPLY_BODY);
            }
        };
    let setup = match wire::decode::<(u64, Setup)>(setup) {
        Ok((identity, _)) if identity != image::identity() => Err(format!(
            "MPI rank {} runs a different build of the program than rank 0: every rank must run \
             the same executable",
            world.rank()
        )),
        Ok((_, setup)) => Ok(setup),
        Err(e) => Err(e.to_string()),
    };
    let setup = match setup {
        Ok(s) => s,
        Err(why) => {
            reply(INIT, Err(super::super::protocol::Failure::Other(why)));
            reply(BYE, Ok(Vec::new()));
            return false;
        }
    };
    let init = match &setup.initializer {
        Some((code, args)) => run(*code, args).map(|_| Vec::new()),
        None => Ok(Vec::new()),
    };
    let init_failed = init.is_err();
    reply(INIT, init);
    if !init_failed {
        let inbox = Arc::new(Inbox::default());
        let done = Arc::new(AtomicBool::new(false));
        let io = {
            let (inbox, done) = (inbox.clone(), done.clone());
            std::thread::spawn(move || take_orders(&inbox, &done))
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
    reply: &dyn Fn(u64, std::result::Result<Vec<u8>, super::super::protocol::Failure>),
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
            Err(super::super::protocol::Failure::Cancelled)
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
fn take_body(world: &SimpleCommunicator) -> Option<Vec<u8>> {
    let root = world.process_at_rank(0);
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
fn take_orders(inbox: &Inbox, done: &AtomicBool) {
    let world = world();
    let root = world.process_at_rank(0);
    let mut last_beat = Instant::now();
    let mut poll = Poll::new();
    while !done.load(Ordering::SeqCst) {
        if last_beat.elapsed() >= BEAT {
            root.send_with_tag(&[0u8][..], ALIVE);
            last_beat = Instant::now();
        }
        let Some((bytes, tag)) = poll.next(&world) else {
            continue;
        };
        // An order's body follows its header (rank 0 sends them one after the other).
        let body = match tag {
            ORDER => match take_body(&world) {
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
