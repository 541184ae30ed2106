//! Pool workers that are MPI ranks (cargo feature `mpi`), in mpi4py.futures' two modes:
//! - **SPMD**: the program is started by `mpirun -n N` (or `srun`) with N > 1;
//!   [`init`](crate::init) lets rank 0 run `main` and turns every other rank into a server of
//!   pool workers, until rank 0 ends.
//! - **spawn**: the program runs alone (no launcher, or `mpirun -n 1`); the first pool over MPI
//!   initialises MPI and starts its worker ranks with `MPI_Comm_spawn` (this executable with
//!   the same arguments, whose [`init`](crate::init) finds its parent and serves it), more when
//!   a pool needs more or one was given up.
//!
//! Either way rank 0 reaches its workers through a communicator where it is rank 0: the world,
//! or one merged with each group it spawned.
//!
//! Messages between rank 0 and a rank are MPI point-to-point messages whose bytes are the
//! pool's own (the orders and replies the local workers read from their rings), tagged by kind.
//! Rank 0 polls (an immediate matched probe with a backoff, as mpi4py does: see [`next_pause`]) so that every
//! wait has a deadline; a rank has a second thread that takes its orders at once (so a send from
//! rank 0 never waits for a task to end) and says it is alive every [`BEAT`]. Rank 0 never makes
//! a blocking MPI call on a rank: it sends and receives without blocking, by deadlines of its
//! own (see `RankWorker::post`), since a blocking send to a rank that died, stopped, or that
//! Open MPI's TCP transport failed to connect to never returns (issue 15: seen once in six
//! runs with both CPUs busy). `MPI_Comm_spawn` itself, which cannot be, runs under a time limit
//! on a thread of its own ([`SPAWN_LIMIT`]), and the end of rank 0 under another
//! ([`END_LIMIT`]).
//!
//! What a rank cannot do is be killed from here: a worker given up (a time limit, a cancel, a
//! silence longer than the pool's limit, [`SILENCE`] by default) is never given work again; the pool goes on with the
//! others (its replacement cannot start: no rank is free). A rank that dies is noticed by its
//! silence; MPI errors return instead of aborting the job (`sys::mpi::errors_return`), and the
//! job must be started so that it survives a dead rank (`mpirun --mca orte_enable_recovery 1`).
//! Open MPI 4 cannot finalise a job that lost a rank, so rank 0 then ends it with
//! `MPI_Abort(0)`, or ends `mpirun` itself when a host was lost (see [`finish`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mpi::Tag;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::Communicator;
use mpi::traits::{Equivalence, Source};

use super::super::protocol::{BYE, INIT, Order, Reply, Setup, split};
use super::super::result::reply_buffer;
use crate::error::{Error, Result};
use crate::sys::image;
use crate::sys::mpi::{Comm, Pending, start_receive};
use crate::wire;

mod serve;
use serve::serve_rank;

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
/// Rank → rank 0: told to finish, it is ready to.
const FINISHED: Tag = 13;
/// Rank 0 → rank, after [`FINISHED`]: how to end: `[0]` finish MPI with everyone (every rank
/// answered), `[1]` exit without (a rank was lost: `MPI_Finalize` would wait for it forever).
const DECIDED: Tag = 7;

/// How long rank 0, ending, waits for every rank to say it finishes too (an idle rank answers
/// at once; one still running a task given up may not).
const FINISH_GRACE: Duration = Duration::from_secs(2);
/// How long a rank that said it is ready to finish waits for [`DECIDED`]; past it (rank 0
/// ended the job without telling it) it exits without finishing MPI.
const DECISION_WAIT: Duration = Duration::from_secs(10);
/// How long rank 0 waits for a send it starts, moving it along, before it leaves it to MPI (see
/// `RankWorker::post`): a megabyte takes well under a millisecond to a rank that takes it.
const SEND_WAIT: Duration = Duration::from_millis(20);
/// How long `MPI_Comm_spawn` may take before the pool gives it up (see [`spawn`]); a spawn took
/// 0.3 s here.
const SPAWN_LIMIT: Duration = Duration::from_secs(60);
/// How long the end of rank 0 (see [`finish`]: waits of 2 s each, then `MPI_Finalize` or
/// `MPI_Abort`) may take before the process exits without MPI (see [`arm_watchdog`]).
const END_LIMIT: Duration = Duration::from_secs(20);
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
/// The communicators that reach worker ranks (rank 0 is this process in each): the world in
/// SPMD mode, one a spawn in spawn mode.
static GROUPS: Mutex<Vec<&'static Comm>> = Mutex::new(Vec::new());
/// Whether this process starts its worker ranks itself (spawn mode: a job of one process).
static SPAWNS: AtomicBool = AtomicBool::new(false);
/// The worker ranks not serving a pool now, nor given up.
static FREE: Mutex<Vec<Place>> = Mutex::new(Vec::new());
/// Ranks given up for silence: dead, or cut off.
static LOST: Mutex<Vec<Place>> = Mutex::new(Vec::new());

/// Set when an `MPI_Comm_spawn` did not return in time (see [`spawn`]).
static STRANDED: AtomicBool = AtomicBool::new(false);

/// Set when [`finish`] has returned (MPI finished with every rank).
static FINISHED_MPI: AtomicBool = AtomicBool::new(false);

/// The process that initialised MPI, and finishes it at its exit.
static FINISHER: AtomicU32 = AtomicU32::new(0);

/// A worker rank: its communicator and its rank there.
#[derive(Clone, Copy)]
struct Place(&'static Comm, i32);

impl PartialEq for Place {
    fn eq(&self, other: &Place) -> bool {
        std::ptr::eq(self.0, other.0) && self.1 == other.1
    }
}

use crate::sys::lock;

/// Whether a launcher of MPI jobs started this process (Open MPI's `mpirun`, MPICH's Hydra,
/// Slurm's `srun` with PMI or PMIx).
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Initialises MPI at `MPI_THREAD_MULTIPLE` (ending the job if the library cannot); `None` if
/// it was initialised already.
fn initialize() -> Option<mpi::environment::Universe> {
    let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)?;
    if threading != mpi::Threading::Multiple {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "multiprocess: the MPI library gives threading level {threading:?}; a pool over MPI \
             ranks needs MPI_THREAD_MULTIPLE"
        );
        universe.world().abort(1);
    }
    Some(universe)
}

/// Called by `init`: in a program started by an MPI launcher, initialises MPI; rank 0 returns
/// (to run `main`), every other rank, and every process spawned by a pool, serves pool workers
/// and exits when rank 0 ends.
pub(crate) fn enter() {
    if !launched_by_mpi() {
        return;
    }
    let Some(universe) = initialize() else {
        return; // initialised already
    };
    let serving = match crate::sys::mpi::parent() {
        Some(parent) => parent,
        None => {
            let world = crate::sys::mpi::world();
            if world.rank() == 0 {
                adopt(universe, world);
                return;
            }
            world
        }
    };
    if serve_rank(serving) {
        drop(universe); // MPI_Finalize, with every rank
    } else {
        std::mem::forget(universe); // no MPI_Finalize: it would wait for a lost rank
    }
    crate::sys::exit_now(0);
}

/// Rank 0 takes the job's other ranks as its workers (none in a job of one process, which
/// spawns them instead).
fn adopt(universe: mpi::environment::Universe, world: &'static Comm) {
    // The other ranks end with this one (in this process only: not in a child it forks).
    let me = std::process::id();
    FINISHER.store(me, Ordering::SeqCst);
    crate::process::on_exit(|| {
        if FINISHER.load(Ordering::SeqCst) == std::process::id() {
            finish();
        }
    });
    SPAWNS.store(world.size() == 1, Ordering::SeqCst);
    *lock(&FREE) = (1..world.size()).rev().map(|r| Place(world, r)).collect();
    lock(&GROUPS).push(world);
    *lock(&UNIVERSE) = Some(universe);
}

/// Makes sure MPI is running in this process: a program that no launcher started initialises it
/// now (spawn mode); one that a launcher started did so in `init`.
fn ensure_started() -> Result<()> {
    if lock(&UNIVERSE).is_some() {
        return Ok(());
    }
    let no_init = || {
        Error::state(
            "a Pool over MPI ranks needs multiprocess::init() first in main (every rank, and \
             every spawned worker, becomes a worker there)",
        )
    };
    if launched_by_mpi() || !crate::process::initialised() {
        return Err(no_init());
    }
    crate::sys::mpi::ask_recovery();
    let universe = initialize().ok_or_else(|| {
        Error::state("MPI was initialised outside multiprocess: a Pool over MPI cannot use it")
    })?;
    adopt(universe, crate::sys::mpi::world());
    Ok(())
}

/// Spawns `n` more worker ranks (spawn mode) and counts them free.
///
/// `MPI_Comm_spawn` blocks until the new ranks have joined, which takes Open MPI's TCP
/// connections between this process and them; one that never completes ("connect() …
/// failed", seen with both CPUs busy) would make it wait forever, where no deadline of ours
/// reaches. So it runs on a thread of its own, and a spawn that has not returned within
/// [`SPAWN_LIMIT`] fails the pool's start of a worker with a clear error; the thread is left
/// in MPI, no rank is spawned again, and the job ends with `MPI_Abort` (see [`finish`]).
fn spawn(n: usize) -> Result<()> {
    if STRANDED.load(Ordering::SeqCst) {
        return Err(Error::state(format!(
            "an earlier MPI_Comm_spawn did not return within {SPAWN_LIMIT:?}: no MPI rank is \
             spawned any more"
        )));
    }
    let program = std::env::current_exe()
        .map_err(|e| Error::io("finding this program's executable to spawn MPI ranks", e))?;
    let args = crate::process::handshake::reentry_args();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mpi-spawn".into())
        .spawn(move || {
            let _ = tx.send(crate::sys::mpi::spawn(&program, &args, n));
        })
        .map_err(|e| Error::io("starting a thread to spawn MPI ranks", e))?;
    let comm = match rx.recv_timeout(SPAWN_LIMIT) {
        Ok(spawned) => spawned.map_err(Error::state)?,
        Err(_) => {
            STRANDED.store(true, Ordering::SeqCst);
            return Err(Error::state(format!(
                "MPI_Comm_spawn of {n} ranks did not return within {SPAWN_LIMIT:?} (Open MPI \
                 could not start or reach them); the job will end with MPI_Abort"
            )));
        }
    };
    lock(&GROUPS).push(comm);
    lock(&FREE).extend((1..comm.size()).rev().map(|r| Place(comm, r)));
    Ok(())
}

/// The number of workers of a pool over MPI that asked for `wanted` (or, if `None`, for as many
/// as the job has: every free rank in SPMD mode; in spawn mode, the MPI universe's size minus
/// this process, at least 1, as mpi4py.futures): starts MPI if need be, and in spawn mode
/// spawns the ranks missing.
pub(crate) fn workers(wanted: Option<usize>) -> Result<usize> {
    ensure_started()?;
    let free = lock(&FREE).len();
    if !SPAWNS.load(Ordering::SeqCst) {
        return Ok(wanted.unwrap_or(free.max(1)));
    }
    let universe = lock(&UNIVERSE).as_ref().and_then(|u| u.size());
    let n = wanted.unwrap_or_else(|| universe.map_or(1, |u| u.saturating_sub(1).max(1)));
    if n > free {
        spawn(n - free)?;
    }
    Ok(n)
}

/// Ends this process, with status 1 and a message, if [`finish`] has not returned
/// [`END_LIMIT`] from now: the last bound on the end of rank 0, for an MPI call there that never
/// returns (`MPI_Finalize`, `MPI_Abort`, waiting on a peer Open MPI cannot reach).
fn arm_watchdog() {
    let _ = std::thread::Builder::new()
        .name("mpi-end".into())
        .spawn(|| {
            std::thread::sleep(END_LIMIT);
            if FINISHED_MPI.load(Ordering::SeqCst) {
                return;
            }
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "multiprocess: MPI did not end within {END_LIMIT:?}; exiting without it"
            );
            crate::sys::exit_now(1);
        });
}

/// Called at the end of rank 0: tells every other rank to finish, and waits up to
/// [`FINISH_GRACE`] for each to say it is ready (one still running a task finishes it first).
/// If all did, tells them so and finishes MPI, which all of them do together. If one was lost
/// or did not answer, `MPI_Finalize` would wait for it forever (Open MPI 4 has no failure
/// notification; a rank finalising after this process ended waits for it in vain): the ranks
/// that answered are told to exit without it, and the job ends with `MPI_Abort`, code 0, after
/// everything was delivered and printed (the MPI runtime kills the ranks left; one it misses
/// exits by itself after [`DECISION_WAIT`]). In a job over several hosts started by Open MPI 4's
/// `mpirun`, which after losing a host waits for its daemon forever even past `MPI_Abort`, rank 0
/// first ends `mpirun` itself (`sys::mpi::end_launcher`: it then exits with status 1).
fn finish() {
    let Some(universe) = lock(&UNIVERSE).take() else {
        return;
    };
    // Whatever happens below (an MPI call that never returns included), the program ends.
    arm_watchdog();
    let lost = lock(&LOST).clone();
    let mut waiting = Vec::new();
    // Messages are sent without blocking, by the same deadline (see `RankWorker::post`).
    let mut sending = Vec::new();
    for &comm in lock(&GROUPS).iter() {
        for rank in (1..comm.size()).filter(|&r| !lost.contains(&Place(comm, r))) {
            sending.push(comm.start_send(rank, FINISH, vec![0u8]));
            waiting.push(Place(comm, rank));
        }
    }
    lock(&FREE).clear();
    let until = Instant::now() + FINISH_GRACE;
    while !waiting.is_empty() && Instant::now() < until {
        // Whatever else a rank still sends (a late reply, "alive") is dropped.
        waiting.retain(|&Place(comm, rank)| {
            let from = comm.process_at_rank(rank);
            while let Some(probed) = from.immediate_matched_probe() {
                if probed.matched_receive_vec::<u8>().1.tag() == FINISHED {
                    return false;
                }
            }
            true
        });
        std::thread::sleep(Duration::from_micros(200));
    }
    let stranded = STRANDED.load(Ordering::SeqCst);
    let together = lost.is_empty() && waiting.is_empty() && !stranded;
    for &comm in lock(&GROUPS).iter() {
        for rank in 1..comm.size() {
            let place = Place(comm, rank);
            if !lost.contains(&place) && !waiting.contains(&place) {
                sending.push(comm.start_send(rank, DECIDED, vec![u8::from(!together)]));
            }
        }
    }
    let until = Instant::now() + FINISH_GRACE;
    let sent = sending.iter_mut().all(|p| p.wait_until(until));
    if !(together && sent) {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let ranks = |places: &[Place]| places.iter().map(|p| p.1).collect::<Vec<i32>>();
        let why = match (lost.is_empty(), waiting.is_empty()) {
            (false, true) => format!("MPI ranks {:?} were lost", ranks(&lost)),
            (true, false) => format!(
                "MPI ranks {:?} did not finish within {FINISH_GRACE:?}",
                ranks(&waiting)
            ),
            (false, false) => format!(
                "MPI ranks {:?} were lost and {:?} did not finish within {FINISH_GRACE:?}",
                ranks(&lost),
                ranks(&waiting)
            ),
            (true, true) if stranded => format!(
                "an MPI_Comm_spawn did not return within {SPAWN_LIMIT:?} (its ranks never \
                 joined)"
            ),
            (true, true) => format!("messages to MPI ranks were not sent within {FINISH_GRACE:?}"),
        };
        let _ = writeln!(std::io::stderr(), "multiprocess: {why}; ending the job");
        if crate::sys::mpi::end_launcher() {
            // The launcher (`mpirun`, which waited for a lost host) is gone with the job.
            std::process::exit(0);
        }
        universe.world().abort(0);
    }
    drop(universe);
    FINISHED_MPI.store(true, Ordering::SeqCst);
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
    comm: &'static Comm,
    rank: i32,
    silence: Duration,
    /// Given up (a kill): never given work again.
    given_up: AtomicBool,
    /// It said goodbye: free for another pool.
    bye: AtomicBool,
    /// Listed free again (once).
    freed: AtomicBool,
    heard: Mutex<Instant>,
    /// Tasks sent, and tasks answered (each counted once).
    sent: AtomicU32,
    answered: AtomicU32,
    /// Messages to it that MPI has not sent yet, each with when it was started: one not sent
    /// within the silence limit gives the rank up (see [`Pending`]).
    sending: Mutex<Vec<(Pending, Instant)>>,
}

impl Ranks {
    pub(crate) fn start(&self, _n: u64, setup: &Setup) -> Result<RankWorker> {
        let silence = self.silence;
        ensure_started()?;
        // In spawn mode a worker given up is replaced by a rank spawned for it.
        if lock(&FREE).is_empty() && SPAWNS.load(Ordering::SeqCst) {
            spawn(1)?;
        }
        let Place(comm, rank) = lock(&FREE).pop().ok_or_else(|| {
            Error::state(
                "no MPI rank is free (a pool over the ranks of mpirun -n N has at most one \
                 worker a rank)",
            )
        })?;
        let message = wire::encode(&(image::identity(), setup))?;
        let worker = RankWorker {
            comm,
            rank,
            silence,
            given_up: AtomicBool::new(false),
            bye: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            heard: Mutex::new(Instant::now()),
            sent: AtomicU32::new(0),
            answered: AtomicU32::new(0),
            sending: Mutex::new(Vec::new()),
        };
        worker.post(SETUP, message);
        Ok(worker)
    }
}

impl RankWorker {
    /// Starts sending `bytes` with `tag`, and forgets the sends that MPI has done. Never waits:
    /// a blocking send to a rank that cannot be reached (dead, stopped, or one Open MPI's TCP
    /// transport failed to connect to) never returns; a send not done within the silence limit
    /// gives the rank up instead (see [`alive`](RankWorker::alive)).
    ///
    /// It does wait up to [`SEND_WAIT`] for this send (Open MPI moves a large message's parts
    /// only while it is called), and gives the buffer back if MPI is done with it by then.
    fn post(&self, tag: Tag, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let started = Instant::now();
        let mut pending = self.comm.start_send(self.rank, tag, bytes);
        let sent = pending.wait_until(started + SEND_WAIT);
        let mut sending = lock(&self.sending);
        sending.retain_mut(|(p, _)| !p.done());
        if sent {
            return pending.into_buffer();
        }
        sending.push((pending, started));
        None
    }

    /// Whether a message to it has waited longer than the silence limit to be sent.
    fn stuck(&self) -> bool {
        let mut sending = lock(&self.sending);
        sending.retain_mut(|(p, _)| !p.done());
        sending
            .first()
            .is_some_and(|(_, started)| started.elapsed() >= self.silence)
    }

    /// Gives it up for good, counted lost (see [`finish`]).
    fn lose(&self) {
        if !self.given_up.swap(true, Ordering::SeqCst) {
            lock(&LOST).push(Place(self.comm, self.rank));
        }
    }

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
        // header in this rank's stream of ORDER_BODY messages (MPI keeps the order in which
        // sends start).
        self.post(ORDER, head.to_vec());
        self.post(ORDER_BODY, body.into_owned());
        Ok(())
    }

    /// Sends one order: `head`, then `body`, given (no copy; see [`send`](RankWorker::send)).
    /// The body comes back when MPI is done with it at once (to be used again), else `None`.
    pub(crate) fn send_owned(&self, head: &[u8], body: Vec<u8>) -> Result<Option<Vec<u8>>> {
        if self.given_up.load(Ordering::SeqCst) {
            return Err(Error::state("the pool worker is gone"));
        }
        if matches!(split::<Order>(head), Ok((Order::Task { .. }, _))) {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        self.post(ORDER, head.to_vec());
        Ok(self.post(ORDER_BODY, body))
    }

    /// Takes one message from the rank if one is there: a reply, or `None` (an "alive" is
    /// noted and dropped).
    fn poll(&self) -> Option<Vec<u8>> {
        loop {
            let rank = self.comm.process_at_rank(self.rank);
            let (header, status) = rank.immediate_matched_probe()?.matched_receive_vec::<u8>();
            *lock(&self.heard) = Instant::now();
            if status.tag() != REPLY {
                continue;
            }
            // The value follows (sent right after by the same thread of the rank): received
            // after the header in a buffer given back by a dropped result (no join, no fresh
            // pages each time).
            // It is received without blocking (a large one comes in parts, and its sender may
            // die in between), by the same deadline.
            let until = Instant::now() + self.silence;
            let (message, probed) = loop {
                if let Some(body) = rank.immediate_matched_probe_with_tag(REPLY_BODY) {
                    break body;
                }
                if Instant::now() >= until {
                    self.lose();
                    return None;
                }
                std::thread::yield_now();
            };
            let len = usize::try_from(probed.count(u8::equivalent_datatype())).unwrap_or(0);
            let mut bytes = reply_buffer(header.len() + len);
            bytes[..header.len()].copy_from_slice(&header);
            let mut receiving = start_receive(message, bytes, header.len(), len);
            if !receiving.wait_until(until) {
                self.lose();
                return None;
            }
            let bytes = receiving.into_buffer()?;
            if let Ok((reply, _)) = split::<Reply>(&bytes) {
                match reply.id {
                    BYE => self.bye.store(true, Ordering::SeqCst),
                    INIT => {}
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
        if lock(&self.heard).elapsed() < self.silence && !self.stuck() {
            return true;
        }
        self.lose();
        false
    }

    /// Gives it up: a rank cannot be killed from here (see the module docs). It is told to
    /// stop after its current task (it then waits, idle, for the end of rank 0).
    pub(crate) fn kill(&self) {
        if !self.given_up.swap(true, Ordering::SeqCst) {
            if let Ok(stop) = super::super::protocol::OrderHead::new(&Order::Stop) {
                self.post(STOP, stop.as_bytes().to_vec());
            }
        }
    }

    pub(crate) fn revoke(&self, seq: u64) {
        if !self.given_up.load(Ordering::SeqCst) {
            self.post(REVOKE, seq.to_le_bytes().to_vec());
        }
    }

    /// The tasks it has started, as far as rank 0 can tell: those answered, and the next one if
    /// any is unanswered (a rank runs its tasks in order, and takes the next at once).
    pub(crate) fn started(&self) -> u32 {
        let answered = self.answered.load(Ordering::SeqCst);
        let sent = self.sent.load(Ordering::SeqCst);
        answered + u32::from(sent > answered)
    }

    /// Once it said goodbye or was given up: 0 for a rank that is free for another pool, -9
    /// (as a killed worker) for one given up or silent; `None` before. Never waits (its reader
    /// takes its goodbye).
    pub(crate) fn ended(&self) -> Option<i32> {
        if self.given_up.load(Ordering::SeqCst) {
            return Some(-9);
        }
        if !self.bye.load(Ordering::SeqCst) {
            return None;
        }
        // Only one call sees it free: a rank is listed free once.
        if self.freed.swap(true, Ordering::SeqCst) {
            return Some(0);
        }
        lock(&FREE).push(Place(self.comm, self.rank));
        Some(0)
    }

    /// Gives it up now unless it said goodbye (see [`ended`](RankWorker::ended)).
    pub(crate) fn reap_now(&self) -> i32 {
        if !self.bye.load(Ordering::SeqCst) {
            self.given_up.store(true, Ordering::SeqCst);
        }
        self.ended().unwrap_or(-9)
    }
}
