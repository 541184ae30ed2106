//! The parent's half of starting a child: each start method's way to make the child, and
//! sending it its bootstrap (what they say to each other is in `handshake`).
//!
//! Handshake (spawn, forkserver): the parent starts the executable again (or has the fork
//! server fork itself) with a channel to the child, then sends two frames: the executable
//! identity (8 bytes) and a `Bootstrap`. The child (see `child`) checks the
//! identity, finds the trampoline, answers `Report::Started`, runs the target and sends one
//! final report. A forked child skips the handshake: it already has everything in memory.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use super::handshake::{Bootstrap, reentry_args};
use super::{ChildrenGuard, Identity, ParentProcess, Shared, child};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::registry::{Code, Image, Job};
use crate::sys::{self, image};
use crate::wire;

/// Bootstrap payloads up to this size are written by `start()` itself (they fit in the socket
/// buffer, so the write cannot block); larger ones by a helper thread.
const INLINE_BOOTSTRAP: usize = 64 * 1024;

/// Bootstrap payloads up to this size are written before the child exists, where descriptors
/// travel without it (Unix): nobody reads them until it does, so they must fit the channel's
/// buffer whatever the system's settings. 2 KiB does: a Unix stream socket takes its first
/// write whole and the next (the handles' byte) while less than its send buffer is in flight,
/// whose smallest setting on Linux is about 4.5 KiB (macOS's default is 8 KiB).
const EARLY_BOOTSTRAP: usize = 2 * 1024;

/// What a feature does around a fork (Python's `util.register_after_fork`, with the parent's
/// side too): `before` runs in the parent just before the fork, with the children list locked,
/// and takes what the feature holds across it (locks the child must find free, references
/// the child must own), keeping it in a thread-local of its own; the child lets go of it in
/// `in_child`, the parent in `in_parent` (with whether the fork happened). Managers and the
/// fork server register one.
///
/// No `Box` passes between them: every heap page a forked child touches is a copy-on-write
/// fault, so the fork path allocates nothing for the child to free (issue 19). For the same
/// reason a feature that only has descriptors for the child to let go of names them in
/// `released` and has no functions (each is a page of code the child would fault in, and a
/// thread-local and a lock the parent would write between two forks).
pub(crate) struct ForkHook {
    pub(crate) before: Option<fn()>,
    pub(crate) in_child: Option<fn()>,
    pub(crate) in_parent: Option<fn(bool)>,
    /// Descriptors a forked child lets go of first thing, whatever object owns them in its
    /// copy of the parent's memory (`sys::release_inherited`): ones whose closing tells
    /// another process that this one is gone. Each holds its descriptor's number while it is
    /// open, -1 otherwise: the feature sets it after the descriptor is opened and clears it
    /// before it is closed, so that it never names another.
    pub(crate) released: &'static [AtomicI32],
}

/// How many fork hooks there can be (one per feature that registers one).
const FORK_HOOK_SLOTS: usize = 4;

/// The fork hooks, in the order registered (each feature registers once): a fixed array the
/// fork path copies onto its stack instead of allocating, read without a lock (a lock's word,
/// written around every fork, would be a page the parent copies each time: issue 19).
static FORK_HOOKS: [OnceLock<&'static ForkHook>; FORK_HOOK_SLOTS] =
    [const { OnceLock::new() }; FORK_HOOK_SLOTS];

/// Registers `hook` (see [`ForkHook`]); call it once per hook.
///
/// # Panics
/// If more features register than [`FORK_HOOK_SLOTS`] (a bug of this crate).
pub(crate) fn on_fork(hook: &'static ForkHook) {
    // The first free slot (one another thread fills meanwhile is skipped).
    if !FORK_HOOKS.iter().any(|slot| slot.set(hook).is_ok()) {
        panic!("multiprocess: more fork hooks than FORK_HOOK_SLOTS");
    }
}

/// How the fork server starts a child whose bootstrap comes over a channel, its handles
/// through the server: registered by `init()` (the fork server needs connections, which stand
/// above processes).
type Launch = fn(sys::Channel, Vec<sys::OwnedHandle>) -> Result<sys::ProcHandle>;

/// The fork server's way to start a child (see [`Launch`]).
static FORK_SERVER: OnceLock<Launch> = OnceLock::new();

/// Registers the fork server's way to start a child (see [`FORK_SERVER`]).
pub(crate) fn serve_forks_with(launch: Launch) {
    let _ = FORK_SERVER.set(launch);
}

/// Starts a child for `job` with `method`; returns its handle and our end of its channel. The
/// one place that knows how each start method makes a child (`record` is the parent's record
/// of the child: a child that is sent its identity gets it from there, a forked child takes
/// its copy as its own; `image` is the job's, made by the caller for a method that sends it;
/// `children` is the locked children list, held across a fork).
pub(crate) fn start(
    method: StartMethod,
    record: &mut Arc<Shared>,
    job: &mut Option<Job>,
    image: Option<Image>,
    children: &mut Option<ChildrenGuard>,
) -> Result<(sys::ProcHandle, Arc<sys::Channel>)> {
    match method {
        StartMethod::Spawn | StartMethod::Forkserver => {
            spawn(record.identity(), image, method).map(|(h, c)| (h, Arc::new(c)))
        }
        StartMethod::Fork => fork(record, job, children),
    }
}

/// Starts a child running `image` (`None`: a closure's job, which has none) that takes its
/// bootstrap over a channel: spawned (the program run again), or forked by the fork server
/// (`method` [`StartMethod::Forkserver`]); returns its handle and our end of its channel.
pub(crate) fn spawn(
    id: Identity,
    image: Option<Image>,
    method: StartMethod,
) -> Result<(sys::ProcHandle, sys::Channel)> {
    let Some(Image {
        trampoline,
        args,
        mut handles,
    }) = image
    else {
        return Err(Error::InvalidArgument(
            "a closure can only be started with the fork start method; with spawn, pass a \
             function item or a non-capturing closure (Process::new) or a Run value"
                .into(),
        ));
    };
    let args = args.map_err(|e| Error::Codec(format!("encoding the arguments: {e}")))?;
    super::handshake::check_test_thread()?;
    let code = Code::of(trampoline)?;
    let reentry = reentry_args();
    // A test binary's child runs libtest's harness before our code: its stdout is the null
    // device until it takes ours back (sent as the last handle), so libtest's lines stay out.
    let quiet =
        sys::QUIET_SPAWN && method != StartMethod::Forkserver && super::handshake::runs_harness();
    let boot = Bootstrap {
        code,
        args,
        name: id.name.to_string(),
        ident: id.ident.to_vec(),
        authkey: id.authkey.to_vec(),
        daemon: id.daemon,
        parent_pid: id.parent_pid,
        parent_name: id.parent_name.to_string(),
        method,
        reentry: reentry.clone(),
        handles: handles.len() as u32 + u32::from(quiet),
        log_level: crate::log::inherited_level(),
        stdout: quiet,
    };
    if quiet {
        handles.push(sys::stdout_handle().map_err(|e| Error::io("duplicating stdout", e))?);
    }
    // A fork server's child takes its handles from the server, which gets them with the
    // request: its channel then carries bytes alone, and the starting process may keep the
    // child's end without keeping them alive (see `sys::ProcHandle::served`).
    let through_server = match method {
        StartMethod::Forkserver => std::mem::take(&mut handles),
        _ => Vec::new(),
    };
    let payload = wire::encode(&boot)?;
    let mut message = Vec::new();
    wire::write_frame(&mut message, &image::identity().to_le_bytes())
        .and_then(|()| wire::write_frame(&mut message, &payload))
        .map_err(|e| Error::io("encoding the bootstrap", e))?;
    let (ours, theirs) = sys::channel_pair().map_err(|e| Error::io("creating a channel", e))?;
    let inline = message.len() <= INLINE_BOOTSTRAP;
    let early = message.len() <= EARLY_BOOTSTRAP && !sys::HANDLES_NEED_CHILD;
    // A child that dies before reading makes these writes fail; its exit code tells the story,
    // so the error is not start()'s to report.
    let send = move |channel: &sys::Channel, transfer| {
        (&*channel).write_all(&message)?;
        sys::send_transfer(channel, transfer)
    };
    // Where descriptors travel without the child's process (Unix), a small bootstrap (see
    // `EARLY_BOOTSTRAP`) waits in the channel before the child exists: a child of the fork
    // server finds it there at its start instead of sleeping until we have the server's reply
    // (a wake-up less).
    let mut send = if early {
        let transfer = sys::transfer_handles(None, std::mem::take(&mut handles))
            .map_err(|e| Error::io("passing handles to the child", e))?;
        send(&ours, transfer).map_err(|e| Error::io("writing the bootstrap", e))?;
        None
    } else {
        Some(send)
    };
    let mut handle = match method {
        StartMethod::Forkserver => {
            let launch = FORK_SERVER.get().ok_or_else(|| {
                Error::state("the forkserver start method needs multiprocess::init() first in main")
            })?;
            launch(theirs, through_server)?
        }
        _ => sys::spawn(&reentry, theirs, quiet)
            .map_err(|e| Error::io("spawning a child process", e))?,
    };
    let Some(send) = send.take() else {
        return Ok((handle, ours));
    };
    let transfer = match sys::transfer_handles(Some(&handle), handles) {
        Ok(t) => t,
        Err(e) => {
            // The child would wait for its handles forever.
            let _ = handle.signal(sys::SIGKILL);
            return Err(Error::io("passing handles to the child", e));
        }
    };
    if inline {
        let _ = send(&ours, transfer);
    } else {
        let writer = ours
            .try_clone()
            .map_err(|e| Error::io("duplicating a channel", e))?;
        std::thread::Builder::new()
            .name("multiprocess-bootstrap".into())
            .spawn(move || send(&writer, transfer))
            .map_err(|e| Error::io("starting the bootstrap writer", e))?;
    }
    Ok((handle, ours))
}

/// Forks a child for `job`; returns its handle and our end of its channel. `children` is the
/// locked children list, held across the fork so the child sees it in a consistent state. The
/// parent allocates nothing for the child (it would free it after the fork, and in a fan-out
/// each heap page written between two forks is copied: issue 19, W11), and the child nothing
/// either: it takes its copy of `record` as its own, its channel inside.
fn fork(
    record: &mut Arc<Shared>,
    job: &mut Option<Job>,
    children: &mut Option<ChildrenGuard>,
) -> Result<(sys::ProcHandle, Arc<sys::Channel>)> {
    let (ours, theirs) = sys::channel_pair().map_err(|e| Error::io("creating a channel", e))?;
    // Shared before the fork: an allocation after it writes malloc's pages, which the child
    // shares (a copy each, issue 19).
    let ours = Arc::new(ours);
    // The child's end goes into the record before the fork, so that the child finds it there
    // without writing it (a page copied, and std's `Once` code, two windows of code faulted
    // in: issue 19); the parent takes it out after. Nothing else holds the record before its
    // start (it joins the children list after), so both `get_mut`s succeed; else the child
    // sets it itself.
    let mut theirs = match Arc::get_mut(record) {
        Some(mine) => {
            mine.to_parent = OnceLock::from(theirs);
            None
        }
        None => Some(theirs),
    };
    // What features hold across the fork (after the children list, in the order they
    // registered), so that the child finds it free and whole.
    let list = FORK_HOOKS.each_ref().map(|slot| slot.get().copied());
    for before in list.iter().flatten().filter_map(|h| h.before) {
        before();
    }
    crate::registry::ready_thread_locals();
    sys::prepare_null();
    // The child's references to its record, made here: each is a write of the record's count,
    // in the child a copy of its page (issue 19). None if the child sets its channel itself.
    let mut own = theirs
        .is_none()
        .then(|| (Arc::clone(record), ParentProcess::of(Arc::clone(record))));
    // A program that starts and joins one child at a time (Python's `p.start(); p.join()`)
    // gives the CPU up right after the fork, before it writes a page: a child the scheduler put
    // on our CPU runs at once, and a short one has ended before our writes, which then copy
    // nothing (three pages a start otherwise: the stack's, the record's, the children list's).
    // Not in a fan-out, whose parent should fork on while its children run (issue 19: W1 fork
    // 110 → 101 µs pinned to one CPU; yielding after every fork cost W11's fork fan-out 40 → 46
    // ms).
    let lone = children.as_ref().is_some_and(|list| list.is_empty()) && super::one_at_a_time();
    let forked = sys::fork(
        #[inline(always)]
        || in_child(&list, &ours, children, &mut theirs, record, &mut own, job),
    );
    if lone {
        std::thread::yield_now();
    }
    for in_parent in list.iter().flatten().rev().filter_map(|h| h.in_parent) {
        in_parent(forked.is_ok());
    }
    drop(theirs.take());
    drop(own.take());
    if let Some(mine) = Arc::get_mut(record) {
        drop(mine.to_parent.take());
    }
    let handle = forked.map_err(|e| Error::io("forking a child process", e))?;
    Ok((handle, ours))
}

crate::sys::forked_child_code! {
    /// The forked child's side of [`fork`]: lets go of what it must not keep and runs the job,
    /// never returning.
    fn in_child(
        list: &[Option<&ForkHook>; FORK_HOOK_SLOTS],
        ours: &sys::Channel,
        children: &mut Option<ChildrenGuard>,
        theirs: &mut Option<sys::Channel>,
        record: &Arc<Shared>,
        own: &mut Option<(Arc<Shared>, Option<ParentProcess>)>,
        job: &mut Option<Job>,
    ) -> ! {
        for hook in list.iter().flatten() {
            for number in hook.released {
                sys::release_inherited(number.load(Ordering::Relaxed));
            }
            if let Some(in_child) = hook.in_child {
                in_child();
            }
        }
        // Our end, closed without dropping the `Arc` (its count and malloc's pages stay
        // unwritten): this frame never returns in the child.
        sys::close_abandoned(sys::channel_handle(ours));
        if let Some(list) = children.take() {
            super::forget_inherited_children(list);
        }
        if let Some(theirs) = theirs.take() {
            let _ = record.to_parent.set(theirs);
        }
        let (mine, parent) = own.take().unwrap_or_else(|| (Arc::clone(record), None));
        child::run_child(mine, parent, StartMethod::Fork, |channel| {
            let _ = sys::stdin_from_null();
            // Called in place, neither taken nor dropped: the child writes and frees as little
            // of its parent's memory as it can (each page written is a copy).
            match job.as_mut() {
                Some(job) => child::run_target(channel, || job.call()),
                None => 1,
            }
        })
    }
}

/// The error for a child (`who`) that ended with `code` before it took its bootstrap: in a
/// program started by this crate, its `main` never called `init()`.
pub(crate) fn never_started(who: &str, code: i32) -> Error {
    Error::Bootstrap(format!(
        "{who} exited with code {code} before reaching multiprocess::init(): the program's \
         main() {}",
        crate::error::NO_INIT_IN_CHILD
    ))
}

/// [`Process::start_failure`](super::Process::start_failure) for a child started by [`spawn`]
/// alone (the fork server): waits up to `wait` for its end, then reads what it said on
/// `channel`. `None` while it runs, when it accepted its bootstrap, or when it was killed.
pub(crate) fn start_failure(
    who: &str,
    handle: &mut sys::ProcHandle,
    channel: &sys::Channel,
    wait: std::time::Duration,
) -> Option<Error> {
    if let Ok(sentinel) = handle.sentinel() {
        let _ = sys::wait_readable(&[sys::borrow_handle(&sentinel)], Some(wait));
    }
    let code = handle.try_wait().ok().flatten().filter(|code| *code >= 0)?;
    let mut inbox = wire::FrameReader::new(wire::DEFAULT_LIMIT);
    while let Ok(1..) = inbox.fill(|buf| sys::read_available(channel, buf)) {}
    // Its first report: `Started`, or why it refused.
    let first = inbox.next_frame().ok().flatten();
    match first.map(|frame| wire::decode::<super::handshake::Report>(&frame)) {
        Some(Ok(super::handshake::Report::Refused(m))) => Some(Error::Bootstrap(m)),
        Some(Ok(_)) => None,
        None | Some(Err(_)) => Some(never_started(who, code)),
    }
}
