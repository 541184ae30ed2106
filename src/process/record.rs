//! A process's record ([`Shared`]): what its owner, the children list and the exit policy
//! share, and what the process itself holds as its `current_process()` (Python's
//! `_current_process` is the `Process` object too); the parent's view of a started child
//! ([`Child`]), and how the parent looks at it, waits for it and signals it.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::handshake::Report;
use super::{AuthKey, CHILDREN, CLOSED, Identity, ShortName, lock};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::log::{self, Level};
use crate::registry::{Job, ResultType};
use crate::sys;
use crate::wire::{self, FrameReader};

/// The part of a process that `active_children()` and the exit policy share with its owner.
pub(crate) struct Shared {
    /// Changed only through [`Shared::set_name`] (which counts the change in `renamed`).
    pub(super) name: Mutex<ShortName>,
    pub(super) daemon: AtomicBool,
    /// Changed only through [`Shared::set_authkey`] (which counts the change in `renamed`).
    pub(super) authkey: Mutex<AuthKey>,
    /// How many times `name` or `authkey` changed: a process that creates children copies its
    /// own name and authkey into each, and keeps a copy it reuses while this stays the same
    /// (see `current::name_and_authkey`), so that making a child writes nothing of its own
    /// record (its locks' words: a page copied at each fork of a fan-out, issue 19).
    pub(super) renamed: AtomicUsize,
    pub(super) ident: super::current::Ident,
    /// Who made it (the child's parent): pid and name, taken at construction, as Python's
    /// `_parent_pid` and `_parent_name`.
    pub(super) creator: u32,
    pub(super) parent_name: ShortName,
    pub(super) result: ResultType,
    pub(super) state: Mutex<State>,
    /// The child's pid once started (0 before): found without the state's lock when the OS
    /// names a child that ended (see `children::reap_finished`).
    pub(super) pid: AtomicU32,
    /// The number of our end of the child's channel while the `Child` holds it open (-1
    /// before and after): a child we fork lets go of its copy without touching the `Child`
    /// (see `children::forget_inherited_children`). Cleared before the channel can close, so
    /// that it never names a descriptor opened since.
    pub(super) channel: AtomicI32,
    /// Started through the fork server, whose children's ends the OS does not name to us
    /// (`sys::ended_child`), so that the children list's scan looks at it (see
    /// `children::reap_finished`). Read without the state's lock: every start asks it of every
    /// child, and a lock taken is a page written, in a fan-out one per sibling (issue 19).
    pub(super) served: AtomicBool,
    /// In the process the record describes (its `current_process()`, see `current::ME`): its
    /// end of the channel to its parent. A spawned child sets it as it becomes that process;
    /// for a forked child the parent puts it in just before the fork and takes it out after
    /// (see `start::fork`). Empty in the parent's record otherwise and in the main process.
    pub(super) to_parent: OnceLock<sys::Channel>,
}

/// What one look at a child found: its exitcode, or that it runs.
pub(super) enum Look {
    Ended(i32),
    Running,
}

/// What a wait for a child waits on: its sentinel, and the channel while a report may come.
pub(super) type Waitables = (Arc<sys::OwnedWaitHandle>, Option<Arc<sys::Channel>>);

// One per process, in its record: the started state is kept inline (no allocation of its own).
#[allow(clippy::large_enum_variant)]
pub(super) enum State {
    /// Not started: the job (taken by `start`, or by `run` for a closure). Here, not in the
    /// `Process`, so that a start writes nothing of its caller's (in a fan-out, the pages of
    /// the caller's `Vec<Process>` stay shared).
    Initial {
        job: Option<Job>,
    },
    /// In the record, not boxed: one allocation less per start (issue 19).
    Started(Child),
    Closed,
}

/// A started child, seen from its parent.
pub(super) struct Child {
    pub(super) handle: sys::ProcHandle,
    /// The parent's end of the channel, until the child closes it.
    pub(super) channel: Option<Arc<sys::Channel>>,
    pub(super) inbox: FrameReader,
    /// The child reached `init()` and accepted its bootstrap.
    pub(super) started: bool,
    /// How the target ended, if the child said so.
    pub(super) report: Option<Report>,
    /// The job, its values dropped at the start: freed with this, after the child's end.
    pub(super) _spent: Option<Job>,
}

impl Child {
    pub(super) fn new(
        handle: sys::ProcHandle,
        channel: Arc<sys::Channel>,
        method: StartMethod,
        spent: Option<Job>,
    ) -> Child {
        Child {
            handle,
            channel: Some(channel),
            inbox: FrameReader::new(wire::DEFAULT_LIMIT),
            // A forked child runs its target without a handshake.
            started: method.copies_memory(),
            report: None,
            _spent: spent,
        }
    }

    /// For a child whose sentinel is not opened yet: whether it still runs (`false`: it has
    /// ended, and is reaped here). `None` once its sentinel is open (a wait would use it).
    fn unwatched(&mut self) -> Option<bool> {
        if self.handle.sentinel_if_open().is_some() {
            return None;
        }
        Some(matches!(self.handle.try_wait(), Ok(None)))
    }

    /// Reads whatever the child has sent, without blocking, until its final report is in: it
    /// sends nothing after that, so no read follows it (none that finds nothing, none to the
    /// end of file); our end stays open until the child has `exited` (a daemonic child takes
    /// our end's closing for our death). Returns the channel if it ended here (the child
    /// exited, the end of file, a failure, a malformed report): the caller clears
    /// [`Shared::channel`] before dropping it.
    #[must_use]
    pub(super) fn absorb(&mut self, exited: bool) -> Option<Arc<sys::Channel>> {
        loop {
            if let Err(e) = self.take_reports() {
                self.report.get_or_insert(Report::Failed(format!(
                    "the child sent a malformed report: {e}"
                )));
                return self.channel.take();
            }
            if self.report.is_some() {
                return if exited { self.channel.take() } else { None };
            }
            let channel = self.channel.as_ref()?;
            match self.inbox.fill(|buf| sys::read_available(channel, buf)) {
                Ok(1..) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                // The end (or a failed read) inside a report.
                Ok(0) | Err(_) if self.inbox.is_partial() => {
                    self.report.get_or_insert(Report::Failed(
                        "the child ended in the middle of a report".into(),
                    ));
                    return self.channel.take();
                }
                Ok(0) | Err(_) => return self.channel.take(),
            }
        }
    }

    /// What a wait for the child waits on besides its sentinel: the channel, while a report
    /// may still come.
    pub(super) fn reporting(&self) -> Option<Arc<sys::Channel>> {
        self.channel.clone().filter(|_| self.report.is_none())
    }

    /// Takes the whole reports the inbox holds.
    fn take_reports(&mut self) -> Result<()> {
        while let Some(report) = self
            .inbox
            .next_frame_with(wire::decode)
            .and_then(Option::transpose)?
        {
            match report {
                Report::Started => self.started = true,
                report => {
                    self.report.get_or_insert(report);
                }
            }
        }
        Ok(())
    }
}

pub(super) const NOT_STARTED: &str = "can only join a started process";

impl Shared {
    /// Renames the process this record describes.
    pub(super) fn set_name(&self, name: ShortName) {
        *lock(&self.name) = name;
        self.renamed.fetch_add(1, Ordering::Release);
    }

    /// Replaces the authkey of the process this record describes.
    pub(super) fn set_authkey(&self, key: AuthKey) {
        *lock(&self.authkey) = key;
        self.renamed.fetch_add(1, Ordering::Release);
    }

    /// The record of a process `id` describes (`id.parent_pid` made it), not started, that
    /// will run `job` (`None`: a record of the calling process itself).
    pub(super) fn new(id: Identity, result: ResultType, job: Option<Job>) -> Shared {
        Shared {
            name: Mutex::new(id.name),
            daemon: AtomicBool::new(id.daemon),
            authkey: Mutex::new(AuthKey(id.authkey)),
            renamed: AtomicUsize::new(0),
            ident: id.ident,
            creator: id.parent_pid,
            parent_name: id.parent_name,
            result,
            state: Mutex::new(State::Initial { job }),
            pid: AtomicU32::new(0),
            channel: AtomicI32::new(-1),
            served: AtomicBool::new(false),
            to_parent: OnceLock::new(),
        }
    }

    /// The main process's record of itself: `MainProcess`, with a new random authkey and no
    /// parent (see `current::ME`).
    pub(super) fn main_process() -> Arc<Shared> {
        let id = Identity {
            name: ShortName::new("MainProcess"),
            ident: super::current::Ident::new(),
            authkey: AuthKey::random().0,
            daemon: false,
            parent_pid: 0,
            parent_name: Default::default(),
        };
        Arc::new(Shared::new(id, ResultType::of::<()>(), None))
    }

    /// The record a spawned child makes of itself from its bootstrap's `id`, with its end of
    /// the channel to its parent.
    pub(crate) fn of_spawned(id: Identity, to_parent: sys::Channel) -> Arc<Shared> {
        let record = Shared::new(id, ResultType::of::<()>(), None);
        let _ = record.to_parent.set(to_parent);
        Arc::new(record)
    }

    /// Who its child is, for the bootstrap of a child that is sent it.
    pub(super) fn identity(&self) -> Identity {
        Identity {
            name: lock(&self.name).clone(),
            ident: self.ident.clone(),
            authkey: lock(&self.authkey).0.clone(),
            daemon: self.daemon.load(Ordering::Relaxed),
            parent_pid: self.creator,
            parent_name: self.parent_name.clone(),
        }
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if matches!(*lock(&self.state), State::Closed) {
            return Err(Error::state(CLOSED));
        }
        Ok(())
    }

    pub(super) fn check_type<R: 'static>(&self) -> Result<()> {
        if std::any::TypeId::of::<R>() != self.result.id {
            return Err(Error::state(format!(
                "the target returns {}, not {}",
                self.result.name,
                std::any::type_name::<R>()
            )));
        }
        Ok(())
    }

    /// The child's sentinel while it is started and its sentinel is open (see
    /// `sys::ProcHandle::sentinel`), without opening it.
    pub(super) fn sentinel_now(&self) -> Option<Arc<sys::OwnedWaitHandle>> {
        match &*lock(&self.state) {
            State::Started(c) => c.handle.sentinel_if_open(),
            State::Initial { .. } | State::Closed => None,
        }
    }

    /// Makes progress (reads reports, reaps) until the child has ended or `timeout` passes;
    /// returns the exitcode once ended.
    pub(super) fn poll_exit(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.and_then(crate::sys::deadline_after);
        // A wait that may wait waits before its first look, which would mostly find nothing
        // just after a start: a read that fails (`EAGAIN`) writes `errno`, a thread-local
        // page, which a forked child alive shares and the write copies (issue 19). A child
        // that has ended is found at once (its sentinel is ready).
        let mut wait = timeout != Some(Duration::ZERO);
        if wait && self.first_wait() {
            // The CPU given up once before the first wait on a running child: one the
            // scheduler put on our CPU (a child just started, Python's `start()` then
            // `join()`) runs now, and a short one has ended when we look again (reaped at
            // once: no sentinel to open, no poll, no wake-up; issue 19, W1). Where nothing
            // else waits for this CPU, one system call.
            std::thread::yield_now();
        }
        loop {
            if let Some((sentinel, channel)) = wait.then(|| self.waitables()).transpose()?.flatten()
            {
                let sentinel = sys::borrow_handle(&sentinel);
                let handles = match &channel {
                    Some(c) => [sentinel, sys::channel_handle(c)],
                    None => [sentinel, sentinel],
                };
                let n = if channel.is_some() { 2 } else { 1 };
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                // After each event (the join's start, a report, the channel's end) it looks
                // again for a moment (`sys::LOOK`) before it sleeps: a short target's events
                // follow each other within microseconds.
                sys::wait_readable_soon(&handles[..n], left)
                    .map_err(|e| Error::io("waiting for a child", e))?;
            }
            match self.look()? {
                Look::Ended(code) => return Ok(Some(code)),
                Look::Running => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        return Ok(None);
                    }
                    wait = true;
                }
            }
        }
    }

    /// Whether a wait for the child would be the first on it while it runs: ours, started, no
    /// sentinel opened yet, not ended (one that has ended is reaped here).
    fn first_wait(&self) -> bool {
        match &mut *lock(&self.state) {
            State::Started(c) if self.creator == sys::pid() => c.unwatched() == Some(true),
            _ => false,
        }
    }

    /// What a wait for the child waits on (see [`Waitables`]), without reading; `None` where
    /// [`look`](Shared::look) gives the answer (not started, closed, another process's
    /// child, ended). A sentinel not yet opened is opened for a child that still runs only:
    /// one that has ended is reaped here instead, which the look then tells (two system calls
    /// fewer, and in a fan-out's joins most children have ended: issue 19, W11).
    pub(super) fn waitables(&self) -> Result<Option<Waitables>> {
        match &mut *lock(&self.state) {
            State::Started(c) if self.creator == sys::pid() => {
                if c.unwatched() == Some(false) {
                    return Ok(None);
                }
                let sentinel = c
                    .handle
                    .sentinel()
                    .map_err(|e| Error::io("opening a child's sentinel", e))?;
                Ok(Some((sentinel, c.reporting())))
            }
            _ => Ok(None),
        }
    }

    /// Makes progress without waiting (reads reports, reaps): the exitcode once ended.
    pub(super) fn look(&self) -> Result<Look> {
        let mut state = lock(&self.state);
        let child = match &mut *state {
            State::Initial { .. } => return Err(Error::state(NOT_STARTED)),
            State::Closed => return Err(Error::state(CLOSED)),
            // Inherited through a fork: another process's child (see `forget_inherited_children`).
            State::Started(_) if self.creator != sys::pid() => return Err(Error::state(CLOSED)),
            State::Started(c) => c,
        };
        let ended = child.absorb(false);
        let exited = child.handle.try_wait();
        let exited =
            exited.map_err(|e| Error::io(format!("waiting for pid {}", child.handle.pid()), e));
        let ended = ended.or_else(|| match exited {
            Ok(Some(_)) => child.absorb(true),
            _ => None,
        });
        if ended.is_some() {
            self.channel.store(-1, Ordering::Relaxed);
        }
        drop(ended);
        if let Some(code) = exited? {
            return Ok(Look::Ended(code));
        }
        Ok(Look::Running)
    }

    pub(super) fn join(self: &Arc<Self>, timeout: Option<Duration>) -> Result<()> {
        if let Some(code) = self.poll_exit(timeout)? {
            self.let_go();
            let mut children = lock(CHILDREN.get());
            let before = children.len();
            children.retain(|c| !Arc::ptr_eq(c, self));
            let first = children.len() < before;
            if first {
                super::children::note_left(children.is_empty());
            }
            drop(children);
            if first && log::enabled(Level::Debug) {
                let name = lock(&self.name).to_string();
                log::event!(Level::Debug, { name = name, exitcode = code }, "{name} ended with exitcode {code}");
            }
        }
        Ok(())
    }

    /// For a child that has ended and is joined: closes our end of its channel (it has sent
    /// all it will, and the look that found its end read it) and whatever its handle keeps
    /// (see `sys::ProcHandle::let_go`).
    fn let_go(&self) {
        let ended = match &mut *lock(&self.state) {
            State::Started(c) if self.creator == sys::pid() => {
                c.handle.let_go();
                c.channel.take()
            }
            _ => None,
        };
        if ended.is_some() {
            self.channel.store(-1, Ordering::Relaxed);
        }
    }

    pub(super) fn signal(&self, signal: i32) -> Result<()> {
        match &mut *lock(&self.state) {
            State::Initial { .. } => Err(Error::state("process not started")),
            State::Closed => Err(Error::state(CLOSED)),
            // Inherited through a fork: another process's child.
            State::Started(_) if self.creator != sys::pid() => Err(Error::state(CLOSED)),
            State::Started(c) => c
                .handle
                .signal(signal)
                .map_err(|e| Error::io(format!("signalling pid {}", c.handle.pid()), e)),
        }
    }
}
