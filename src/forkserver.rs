//! The forkserver start method (Python's `multiprocessing.forkserver`), Unix.
//!
//! The first process started with this method starts a server: this program spawned once more,
//! single-threaded, doing nothing but wait for requests. Each later start asks the server to
//! `fork`; the new process then takes its bootstrap from the parent exactly as a spawned child
//! does (same handshake, same arguments and handles over its own channel), so a target, its
//! arguments and the rules are those of spawn. What it saves is the `exec`: the program's
//! loading and its start-up before `init()`. And unlike the fork method it is safe from a
//! program with threads: the server that forks has none.
//!
//! The server is the children's parent, so it reaps them, and tells each child's exit status
//! through a pipe of the child's own, which its [`Process`](crate::Process) in the starting
//! process holds as its sentinel (the starting process makes the pair and sends the server its
//! end with the request). A start does not wait for the server's fork: the server answers
//! each request with the child's pid, read when someone asks for it (`Process::pid`), so that
//! a fan-out's starts follow each other while the server forks. The server stops when the process that started it ends (its
//! request channel closes). It is started with the environment, working directory and
//! executable of its first use, and its children inherit those, not later changes (as in
//! Python).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::connection::{Connection, Waitable, pipe};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::start::ForkHook;
use crate::process::{Identity, current_process, lock};
use crate::registry::Job;
use crate::sys;
use crate::sys::fork_lock::ForkLock;
use crate::wire;

/// The running server, seen from the process that started it.
struct Server {
    requests: Connection,
    handle: sys::ProcHandle,
    /// Our end of its bootstrap channel, kept open: closing it would tell the server (a child
    /// of ours) that we are gone.
    _channel: sys::Channel,
    /// Where the pids of the children asked for and not yet answered go, in the order asked
    /// (the server answers in that order). A start does not wait for its answer: whoever
    /// needs a pid reads the answers up to it ([`wait_for_pid`]), and each start first takes
    /// those that have come.
    unanswered: std::collections::VecDeque<Arc<AtomicU32>>,
    /// Whether the server has answered a request yet: until it has, a start waits for its
    /// answer (a server that cannot run, its program lacking `init()`, is found at that
    /// start, as before the answers were left for later).
    proven: bool,
}

impl Server {
    /// Takes the server's answers: those that have come (`wait` false), or up to the one that
    /// fills `until`. A server that is gone (or talks nonsense) will answer none of the rest.
    fn take_answers(&mut self, until: Option<&AtomicU32>, wait: bool) -> Result<()> {
        while let Some(next) = self.unanswered.front() {
            if until.is_some_and(|cell| cell.load(Ordering::Acquire) != 0) {
                return Ok(());
            }
            let ready = if wait {
                // Each answer follows its request's fork within microseconds: look before
                // sleeping. No deadline: the server answers each request right after its
                // fork, or it has ended and the channel says so.
                self.requests.poll_soon(None)
            } else {
                self.requests.poll(Some(Duration::ZERO))
            };
            match ready {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    self.gone();
                    return Err(e);
                }
            }
            let pid = match self.requests.recv::<Reply>() {
                Ok(Reply::Started { pid }) => pid,
                Ok(Reply::Failed(why)) => {
                    crate::panics::report_error!(
                        "multiprocess: the fork server could not start a process: {why}"
                    );
                    sys::ServedPid::NEVER
                }
                Err(e) => {
                    self.gone();
                    return Err(e);
                }
            };
            next.store(pid, Ordering::Release);
            self.unanswered.pop_front();
            self.proven = true;
        }
        Ok(())
    }

    /// The server will answer nothing more: every pid still awaited never comes.
    fn gone(&mut self) {
        for cell in self.unanswered.drain(..) {
            cell.store(sys::ServedPid::NEVER, Ordering::Release);
        }
    }
}

/// How many requests may wait for the server's answer (see [`Server::unanswered`]).
const UNANSWERED: usize = 64;

/// [`sys::ServedPid::wait`]: reads the server's answers until `cell` holds the pid (or the
/// server is gone).
fn wait_for_pid(cell: &AtomicU32) {
    let mut slot = lock(SERVER.get());
    match slot.as_mut() {
        Some(server) if server.unanswered.iter().any(|c| std::ptr::eq(&**c, cell)) => {
            let _ = server.take_answers(Some(cell), true);
        }
        // Not this server's (it was replaced): its answer will never come.
        _ => {}
    }
    if cell.load(Ordering::Acquire) == 0 {
        cell.store(sys::ServedPid::NEVER, Ordering::Release);
    }
}

/// This process's server. Per process: a forked child's first use finds its own slot, empty
/// (its parent's server is not its own: the child forgets its copy, having let go of the
/// descriptors that matter at its start, see [`FORK_HOOK`]). Nothing of it is held across
/// a fork, whatever other threads are doing.
static SERVER: ForkLock<Option<Server>> = ForkLock::per_process(
    || None,
    |parents| {
        std::mem::forget(parents.take());
        None
    },
);

/// The numbers of the server's request channel and of our end of its bootstrap channel while
/// it runs (-1 otherwise), for a forked child to let go of (see [`FORK_HOOK`]): set once the
/// server runs, cleared before its channels close.
static CHANNELS: [AtomicI32; 2] = [const { AtomicI32::new(-1) }; 2];

/// What a forked child does with its parent's server: it lets go of its copies of the two
/// channels whose closing tells the server that its starting process is gone, by number,
/// without touching the `Server` (every page a forked child writes is a copy: W1's fork row,
/// run after its forkserver row, paid for this server in every child); `SERVER` gives it a
/// slot of its own. No function: the parent does nothing around the fork. (`init()`
/// registers this hook.)
pub(crate) static FORK_HOOK: ForkHook = ForkHook {
    before: None,
    in_child: None,
    in_parent: None,
    released: &CHANNELS,
};

/// Publishes `server`'s channels in [`CHANNELS`] (`None`: clears them, before they close).
fn publish(server: Option<&Server>) {
    let numbers = server.map_or([-1, -1], |s| {
        let requests = s.requests.fileno().ok().and_then(|n| i32::try_from(n).ok());
        [requests.unwrap_or(-1), sys::channel_number(&s._channel)]
    });
    for (slot, number) in CHANNELS.iter().zip(numbers) {
        slot.store(number, Ordering::Relaxed);
    }
}

/// An OS handle inside a request or a reply (it travels out of band).
struct Handle(sys::OwnedHandle);

impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let copy = self
            .0
            .try_clone()
            .map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        wire::push_handle::<S::Error>("forkserver handle", copy)?.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        wire::take_handle::<D::Error>("forkserver handle", index).map(Handle)
    }
}

/// Asks the server for a child that will bootstrap on `channel` with `handles` (the
/// bootstrap's, in its order), and whose exit status the server writes on `status` (the other
/// end is the starting process's sentinel).
#[derive(Serialize, Deserialize)]
struct Request {
    channel: Handle,
    status: Handle,
    handles: Vec<Handle>,
}

/// The server's answer.
#[derive(Serialize, Deserialize)]
enum Reply {
    /// The child's pid.
    Started { pid: u32 },
    /// The server could not fork (it closes the status pipe: the starting process reads
    /// Python's 255 there).
    Failed(String),
}

/// `multiprocessing.forkserver.ensure_running()`: starts this process's fork server if it is
/// not running (the first start with the forkserver method does it anyway). Starting it early,
/// before the program makes threads or changes its environment, fixes what the server's
/// children inherit.
///
/// # Errors
/// [`Error::InvalidArgument`] on Windows, which has no fork; [`Error::Io`] if the server cannot
/// be started.
pub fn ensure_running() -> Result<()> {
    running(&mut lock(SERVER.get())).map(|_| ())
}

/// The fork server's pid, if this process runs one: leak checks in tests count its children as
/// ours, and not it. Not part of the API.
#[doc(hidden)]
pub fn server_pid() -> Option<u32> {
    lock(SERVER.get()).as_ref().map(|s| s.handle.pid())
}

/// At this process's exit, after its children are joined: closes the request channel, which
/// ends the server, and reaps it (killing it if it has not ended within two seconds).
fn stop() {
    // A forked child's copy of the server is its parent's (and is not made here: no allocation
    // at a forked child's end).
    let Some(slot) = SERVER.mine() else {
        return;
    };
    let server = match slot.try_lock() {
        Ok(mut slot) => slot.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        // Another thread is starting a child right now: leave the server to end by itself.
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(server) = server {
        retire(server, Duration::from_secs(2));
    }
}

/// Ends a server and reaps it: closes its request channel (it stops when it sees that), and
/// kills it if it is still there after `grace`.
fn retire(mut server: Server, grace: Duration) {
    publish(None);
    server.gone();
    let Server {
        requests,
        mut handle,
        _channel,
        ..
    } = server;
    drop((requests, _channel));
    let deadline = Instant::now() + grace;
    while let Ok(None) = handle.try_wait() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = handle.signal(sys::SIGKILL);
        }
        let wait = left.max(Duration::from_millis(10));
        match handle.sentinel() {
            Ok(sentinel) => {
                let _ = sys::wait_readable(&[sys::borrow_handle(&sentinel)], Some(wait));
            }
            // No sentinel (out of descriptors): look again after a moment.
            Err(_) => std::thread::sleep(wait.min(Duration::from_millis(10))),
        }
    }
}

fn running(slot: &mut Option<Server>) -> Result<&mut Server> {
    if let Some(server) = slot {
        if matches!(server.handle.try_wait(), Ok(Some(_)) | Err(_)) {
            publish(None);
            server.gone();
            *slot = None;
        }
    }
    match slot {
        Some(server) => Ok(server),
        None => {
            let server = slot.insert(start_server()?);
            publish(Some(server));
            Ok(server)
        }
    }
}

fn start_server() -> Result<Server> {
    if !cfg!(unix) {
        return Err(Error::InvalidArgument(
            "the forkserver start method does not exist on Windows; use spawn".into(),
        ));
    }
    // Our server ends with us (and is reaped, not left to init).
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| crate::process::on_exit(stop));
    // The server and its children use this process's shared-memory tracker.
    sys::ensure_tracker().map_err(|e| Error::io("starting the resource tracker", e))?;
    let (requests, theirs) = pipe()?;
    let job = job(serve, (theirs,));
    let me = current_process();
    let id = Identity {
        name: crate::process::ShortName::new("ForkServer"),
        ident: Default::default(),
        authkey: me.authkey().iter().copied().collect(),
        daemon: false,
        parent_pid: sys::pid(),
        parent_name: crate::process::ShortName::new(&me.name()),
    };
    let (handle, channel) = crate::process::start::spawn(id, job.image(), StartMethod::Spawn)?;
    Ok(Server {
        requests,
        handle,
        _channel: channel,
        unanswered: std::collections::VecDeque::new(),
        proven: false,
    })
}

/// The job of running `target` with `args` (a helper to name the target's type).
fn job<F, A>(_target: F, args: A) -> Job
where
    F: crate::registry::Target<A, ()>,
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    Job::target::<F, A, ()>(args)
}

/// Starts a child of the server that will take its bootstrap from `channel` (the other end is
/// the caller's) and its bootstrap's `handles` from the server, without waiting for the
/// server's fork: its pid comes later (see [`Server::unanswered`]). A server found dead is
/// restarted once.
pub(crate) fn start_child(
    channel: sys::Channel,
    handles: Vec<sys::OwnedHandle>,
) -> Result<sys::ProcHandle> {
    let mut slot = lock(SERVER.get());
    running(&mut slot)?;
    let (status, theirs) =
        sys::status_pipe().map_err(|e| Error::io("creating a status pipe", e))?;
    let request = Request {
        channel: Handle(
            sys::channel_into_handle(channel).map_err(|e| Error::io("passing a channel", e))?,
        ),
        status: Handle(theirs),
        handles: handles.into_iter().map(Handle).collect(),
    };
    let mut last = None;
    for _ in 0..2 {
        let server = running(&mut slot)?;
        // The answers that have come: the list stays as short as the server is behind, and no
        // longer than `UNANSWERED` (each request carries two descriptors, and the OS bounds
        // how many a process may have in flight).
        let asked = server.take_answers(None, false).and_then(|()| {
            if server.unanswered.len() >= UNANSWERED {
                let oldest = server.unanswered.front().map(Arc::clone);
                server.take_answers(oldest.as_deref(), true)?;
            }
            server.requests.send(&request)
        });
        let asked = asked.and_then(|()| {
            let cell = Arc::new(AtomicU32::new(0));
            server.unanswered.push_back(Arc::clone(&cell));
            if !server.proven {
                // A new server's first answer is awaited: one that cannot run says so here.
                server.take_answers(Some(&cell), true)?;
            }
            Ok(cell)
        });
        match asked {
            Ok(cell) => {
                let pid = sys::ServedPid {
                    cell,
                    wait: wait_for_pid,
                };
                return sys::ProcHandle::served(pid, status, request.channel.0)
                    .map_err(|e| Error::io("starting a process through the fork server", e));
            }
            // A server that is gone (or talks nonsense) is reaped and replaced; any other
            // failure is the answer.
            Err(e @ (Error::Io { .. } | Error::Eof | Error::Codec(_))) => {
                last = Some(e);
                if let Some(mut old) = slot.take() {
                    old.gone();
                    // A server that never took its bootstrap (its program lacks `init()`)
                    // would not take it again: say why instead.
                    let why = crate::process::start::start_failure(
                        "the fork server",
                        &mut old.handle,
                        &old._channel,
                        Duration::from_secs(2),
                    );
                    retire(old, Duration::ZERO);
                    if let Some(why) = why {
                        return Err(why);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::Eof))
}

// ---------------------------------------------------------------------------------------------
// The server

/// A child of the server: its pid, and the pipe end its exit status goes to.
struct Served {
    pid: u32,
    status: sys::OwnedHandle,
}

/// The server's target: answers requests until the starting process is gone, and reports each
/// child's exit status when it ends (woken by `SIGCHLD`: see [`sys::Reaper`]).
fn serve(requests: Connection) {
    // The server prints nothing: what the program wrote before `init()` goes out now, and its
    // forks skip the flush (it would write a page of std's, each fork a copy: issue 19).
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let Ok(reaper) = sys::Reaper::install() else {
        return;
    };
    let mut requests = Some(requests);
    let mut children: Vec<Served> = Vec::new();
    while let Some(conn) = &requests {
        let Ok(own) = conn.wait_handle() else {
            break;
        };
        // A fan-out's next request follows the reply within microseconds: look for it (and for
        // children's ends) before sleeping.
        let ended = match sys::wait_readable_soon(&[own, reaper.handle()], None) {
            Ok(ready) => ready.get(1) == Some(&true),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                true
            }
        };
        // Children that ended: their statuses, as Python's exitcode.
        if ended {
            reaper.reap(|pid, code| {
                if let Some(i) = children.iter().position(|c| c.pid == pid) {
                    let child = children.swap_remove(i);
                    sys::write_status(child.status, code);
                }
            });
        }
        if !conn.poll(Some(Duration::ZERO)).unwrap_or(true) {
            continue;
        }
        let request = match conn.recv::<Request>() {
            Ok(r) => r,
            // The starting process is gone (or talks nonsense): stop.
            Err(_) => break,
        };
        let reply = match fork_child(request, &mut requests, &children, &reaper) {
            Ok(served) => {
                let pid = served.pid;
                children.push(served);
                Reply::Started { pid }
            }
            Err(e) => Reply::Failed(e.to_string()),
        };
        if let Some(conn) = &requests {
            if conn.send(&reply).is_err() {
                break;
            }
        }
    }
}

/// Forks a child that bootstraps on the request's channel, as a spawned child would: its pid
/// and the socket its exit status goes to.
fn fork_child(
    request: Request,
    requests: &mut Option<Connection>,
    children: &[Served],
    reaper: &sys::Reaper,
) -> Result<Served> {
    // Kept while the child runs: with its siblings', above the server's other descriptors,
    // so that each new child closes them all at once.
    let status_ours = reaper.keep_high(request.status.0);
    let handles: Vec<sys::OwnedHandle> = request.handles.into_iter().map(|h| h.0).collect();
    let mut carried = Some((request.channel.0, status_ours, handles));
    let pid = sys::fork_unwatched(|| {
        // The new child keeps nothing of the server's but the channel and the handles it was
        // given: the server's connection, its wake-up pipe and its other children's status
        // pipes are closed and the objects forgotten (dropping them would free the server's
        // memory: pages written, each a copy, issue 19).
        let Some((channel, ours, handles)) = carried.take() else {
            sys::exit_now(1)
        };
        drop(ours);
        let kept = std::iter::once(&channel).chain(&handles);
        let swept = reaper.release_in_child(kept.map(sys::borrow_handle));
        if let Some(conn) = requests.take() {
            conn.abandon();
        }
        for sibling in children {
            let status = sys::borrow_handle(&sibling.status);
            if !(swept && reaper.kept_high(status)) {
                sys::close_abandoned(status);
            }
        }
        crate::process::cut_parent_channel();
        match sys::channel_from_handle(channel) {
            Ok(channel) => crate::process::child::run_spawned(channel, Some(handles)),
            Err(_) => sys::exit_now(1),
        }
    })
    .map_err(|e| Error::io("forking", e))?;
    let Some((channel, status_ours, handles)) = carried.take() else {
        return Err(Error::state("the fork server lost a request"));
    };
    drop((channel, handles));
    Ok(Served {
        pid,
        status: status_ours,
    })
}
