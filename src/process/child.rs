//! The child's half of a start: the handshake of a spawned child, becoming the child, running
//! the target, reporting how it ended, the exit policy and exit code.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::handshake::{self, Bootstrap, Report};
use super::{Identity, ParentProcess, Shared};
use crate::context::{self, StartMethod};
use crate::error::{Error, Result};
use crate::log::{self, Level};
use crate::panics::{self, report_error};
use crate::sys::{self, image};
use crate::wire;

/// A spawned child (or one the fork server forked): checks the handshake, then runs the
/// target. Never returns. `given`: the bootstrap's handles, where they came another way than
/// the channel (a fork server's child has them from the server).
pub(crate) fn run_spawned(channel: sys::Channel, given: Option<Vec<sys::OwnedHandle>>) -> ! {
    let accepted = (|| -> Result<(Bootstrap, image::Trampoline, Vec<sys::OwnedHandle>)> {
        let mut read = Handshake::read(&channel)?;
        let boot: Bootstrap = wire::decode(read.bootstrap())
            .map_err(|e| Error::Bootstrap(format!("garbled bootstrap message: {e}")))?;
        let trampoline = boot.code.resolve()?;
        let n = boot.handles as usize;
        let handles = match given {
            Some(given) if given.len() == n => given,
            Some(given) => {
                return Err(Error::Bootstrap(format!(
                    "{n} handles expected, {} given",
                    given.len()
                )));
            }
            None if n == 0 => Vec::new(),
            None => read
                .handles(&channel, n)
                .map_err(|e| Error::Bootstrap(format!("receiving {n} handles: {e}")))?,
        };
        Ok((boot, trampoline, handles))
    })();
    let (boot, trampoline, mut handles) = match accepted {
        Ok(x) => x,
        Err(e) => {
            report_error!("multiprocess: {e}");
            send(&channel, &Report::Refused(e.to_string()));
            sys::exit_now(1);
        }
    };
    if boot.stdout {
        // Our stdout is the null device until now (see `Bootstrap::stdout`).
        if let Some(stdout) = handles.pop() {
            let _ = sys::restore_stdout(stdout);
        }
    }
    if boot.stdout {
        // Our children re-run the harness too. (A fork server's child keeps what the server
        // had: it re-runs nothing itself, but its spawned children do.)
        handshake::set_harness(true);
    }
    handshake::set_reentry(boot.reentry, false);
    log::inherit_level(boot.log_level);
    let id = Identity {
        name: super::ShortName::new(&boot.name),
        ident: boot.ident.into(),
        authkey: boot.authkey.into(),
        daemon: boot.daemon,
        parent_pid: boot.parent_pid,
        parent_name: super::ShortName::new(&boot.parent_name),
    };
    let args = boot.args;
    let record = Shared::of_spawned(id, channel);
    run_child(record, None, boot.method, move |channel| {
        run_target(channel, || {
            wire::with_handles(handles, || trampoline(&args))
        })
    })
}

/// A spawned child's handshake as it arrived: the executable's identity (checked as soon as it
/// is in) and the bootstrap (two frames), what followed them, and the handles that came along.
/// Read in as few reads as the parent's writes allow (one, for a small bootstrap: the parent
/// writes it before the child exists where it can).
struct Handshake {
    /// On the stack up to [`Handshake::FIRST`] bytes: a served child's heap pages are its
    /// server's, each one written a copy (a 4 KiB buffer cost four page faults, issue 19).
    buf: smallvec::SmallVec<[u8; Handshake::FIRST]>,
    /// Where each frame's payload lies in `buf`, and where the rest begins.
    frames: [std::ops::Range<usize>; 2],
    arrived: std::collections::VecDeque<sys::OwnedHandle>,
}

impl Handshake {
    /// What one read takes at first: a bootstrap of a few arguments and its handles.
    const FIRST: usize = 512;
    /// The handles a bootstrap usually carries at most (a few queues' or connections').
    const HANDLES: usize = 16;

    fn read(channel: &sys::Channel) -> Result<Handshake> {
        let broken = |e: Error| Error::Bootstrap(format!("reading the handshake: {e}"));
        let mut buf = smallvec::SmallVec::from_buf([0u8; Self::FIRST]);
        let mut have = 0;
        // Room for a bootstrap's usual handles at once: a deque that grows runs its growth's
        // code, two windows of code more for a fork server's child to fault in (issue 19).
        let mut arrived = std::collections::VecDeque::with_capacity(Self::HANDLES);
        let mut frames: [std::ops::Range<usize>; 2] = [0..0, 0..0];
        let mut done = 0;
        let mut at = 0;
        while done < 2 {
            // Frames complete in what we have are taken; else read more (room for the frame
            // being read, whose length its header gave, or twice what we have).
            let limit = if done == 0 { 8 } else { wire::DEFAULT_LIMIT };
            let need = match wire::parse_header(&buf[at..have], limit).map_err(broken)? {
                Some((len, header)) => {
                    let end = at + header + len as usize;
                    if end <= have {
                        frames[done] = at + header..end;
                        if done == 0 {
                            Self::check_identity(&buf[frames[0].clone()])?;
                        }
                        at = end;
                        done += 1;
                        continue;
                    }
                    end
                }
                None => have + 12,
            };
            if need > buf.len() {
                // Doubling: a length read from the channel is not trusted with an allocation.
                buf.resize(need.min(2 * buf.len()), 0);
            }
            let got = sys::recv_channel(channel, &mut buf[have..], &mut arrived)
                .map_err(|e| broken(Error::io("reading the bootstrap", e)))?;
            if got == 0 {
                return Err(broken(if have == 0 {
                    Error::Eof
                } else {
                    wire::eof_in_message()
                }));
            }
            have += got;
        }
        buf.truncate(have);
        Ok(Handshake {
            buf,
            frames,
            arrived,
        })
    }

    /// The parent's executable identity must be ours.
    fn check_identity(theirs: &[u8]) -> Result<()> {
        let ours = image::identity().to_le_bytes();
        if theirs != ours {
            return Err(Error::Bootstrap(format!(
                "executable mismatch: the parent runs build {:02x?}, this child runs {:02x?}; \
                 parent and child must run the same build of the program",
                theirs, ours
            )));
        }
        Ok(())
    }

    /// The bootstrap frame's payload.
    fn bootstrap(&self) -> &[u8] {
        &self.buf[self.frames[1].clone()]
    }

    /// The `count` handles the bootstrap announced: those that came along, and the rest read.
    fn handles(
        &mut self,
        channel: &sys::Channel,
        count: usize,
    ) -> io::Result<Vec<sys::OwnedHandle>> {
        let transfer = &self.buf[self.frames[1].end..];
        sys::recv_handles(channel, count, transfer, &mut self.arrived)
    }
}

crate::sys::forked_child_code! {
    /// Common to spawned and forked children: become the process `record` describes (its channel
    /// to the parent set), run `body`, apply the exit policy, exit with the code `body` returns.
    /// `parent` is the record's [`ParentProcess`], if the caller made it (a forked child's parent
    /// makes it before the fork: its reference count is a write to the record's page, in a child a
    /// copy, issue 19). Generic but small: its two halves are not.
    pub(super) fn run_child(
        record: Arc<Shared>,
        parent: Option<ParentProcess>,
        method: StartMethod,
        body: impl FnOnce(&sys::Channel) -> i32,
    ) -> ! {
        let parent = enter(record, parent, method);
        let code = body(parent.channel());
        leave(method, code)
    }
}

crate::sys::forked_child_code! {
    /// [`run_child`]'s first half: becomes the process `record` describes; returns its parent.
    fn enter(
        record: Arc<Shared>,
        parent: Option<ParentProcess>,
        method: StartMethod,
    ) -> ParentProcess {
        let daemon = record.daemon.load(Ordering::Relaxed);
        let Some(parent) = parent.or_else(|| ParentProcess::of(Arc::clone(&record))) else {
            // Never: both callers set the channel.
            sys::exit_now(1)
        };
        super::become_child(record);
        context::inherit(method);
        if !method.copies_memory() {
            // A forked child needs no handshake: its parent knows it runs the target.
            send(parent.channel(), &Report::Started);
        }
        if daemon {
            watch_parent(parent.clone());
        }
        log::event!(Level::Info, {}, "child process calling self.run()");
        parent
    }
}

crate::sys::forked_child_code! {
    /// [`run_child`]'s second half: the exit policy, then the exit with `code`.
    fn leave(method: StartMethod, code: i32) -> ! {
        log::event!(
            Level::Info,
            { exitcode = code },
            "process exiting with exitcode {code}"
        );
        super::exit_function();
        super::flush_stdio();
        if method != StartMethod::Spawn {
            // Forked (by us or by the fork server): the C runtime's exit handlers and library
            // destructors are the parent's (or the server's); leave without them, as Python's
            // forked and fork-server children do (`os._exit` after `_bootstrap`). In a fork-server
            // child they were a dozen windows of libc and the loader's code faulted in (issue 19).
            sys::exit_now(code)
        }
        // Spawned: a program of its own, which ends as one (Python's spawned child `sys.exit`s).
        std::process::exit(code)
    }
}

crate::sys::forked_child_code! {
    /// Runs the target, reports how it ended, and returns the exit code (0, or 1 after a panic).
    pub(super) fn run_target(channel: &sys::Channel, target: impl FnOnce() -> Result<Vec<u8>>) -> i32 {
        let outcome = panics::catch_in_target(|| super::current_process().name(), target);
        let (report, code) = match outcome {
            // A value of no bytes (`()`, and every other zero-sized type) goes unsaid: a started
            // child's exit code 0 says it (`Process::result`). Its parent, which waits on the
            // channel and the sentinel, then wakes once, at the end, not at the report and again
            // at the end; and the child runs no `writev` (issue 19, W1).
            Ok(Ok(value)) if value.is_empty() => return 0,
            Ok(Ok(value)) => (Report::Returned(value), 0),
            Ok(Err(e)) => {
                report_error!("Process {}:\n{e}", super::current_process().name());
                let reason = match e {
                    Error::Codec(m) => m,
                    other => other.to_string(),
                };
                (Report::Failed(reason), 1)
            }
            Err(message) => (Report::Panicked(message), 1),
        };
        send(channel, &report);
        code
    }
}

crate::sys::forked_child_code! {
    /// Sends a report to the parent; a parent that is gone cannot be told, so errors are ignored.
    fn send(channel: &sys::Channel, report: &Report) {
        // The usual report, a value, goes as its encoding's prefix and the value itself, in one
        // `writev` from our own code: no copy, no serde code or tables, no std socket code (each
        // window of code a forked child runs, libc's `memcpy` included, is a fault: issue 19).
        if let Report::Returned(value) = report {
            let (prefix, p) = Report::returned_prefix(value.len());
            let (head, h) = wire::header(p + value.len());
            if p + value.len() > ARMED_REPORT_LIMIT {
                // It may have to wait for the parent to read (see `ARMED_REPORT_LIMIT`).
                disarm();
            }
            let _ = sys::write_all_vectored(channel, &[&head[..h], &prefix[..p], value]);
            return;
        }
        // Other small reports are encoded on the stack: after a fork every heap page the child
        // touches is a copy-on-write fault.
        let mut small = [0u8; 256];
        if let Ok(payload) = postcard::to_slice(report, &mut small) {
            let _ = wire::write_frame(&mut &*channel, payload);
        } else if let Ok(bytes) = wire::encode(report) {
            if bytes.len() > ARMED_REPORT_LIMIT {
                // It may have to wait for the parent to read (see `ARMED_REPORT_LIMIT`).
                disarm();
            }
            let _ = wire::write_frame(&mut &*channel, &bytes);
        }
    }
}

/// What a daemonic child does before it ends because its parent is gone, in the order
/// registered (a `SharedMemoryManager`'s process unlinks its segments).
static PARENT_GONE_HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Where the OS itself ends this daemonic child when its parent's end of the channel closes
/// (see [`watch_parent`]): the channel, and the pid of the process that armed it (a forked
/// child inherits this static but is not the process the OS would end).
static ARMED: Mutex<Option<(u32, ParentProcess)>> = Mutex::new(None);

/// How large a report may be while the OS's watch is armed: a write that has to wait for room
/// in the channel's buffer arms its wake-up too (see `sys::kill_on_readable`), and the
/// channel's buffer (about 200 KiB for a Unix socket) always has room for this much.
const ARMED_REPORT_LIMIT: usize = 64 * 1024;

/// Registers `hook` to run when this daemonic child ends because its parent is gone (see
/// [`watch_parent`]); once per hook.
pub(crate) fn on_parent_gone(hook: fn()) {
    super::lock(&PARENT_GONE_HOOKS).push(hook);
    // The OS's watch can only kill: a thread runs the hooks instead. Disarmed first, so that
    // a parent that ends meanwhile is found by the thread (the channel stays readable).
    if let Some(parent) = disarm() {
        watch_with_thread(parent);
    }
}

/// A daemonic child dies with its parent. The parent sends nothing on the channel after the
/// bootstrap, so the channel turning readable means the parent's end closed: the parent is
/// gone. Where the OS can end the process itself on that event (Linux), no thread is needed
/// (a pool of 256 workers had 256 of them); else, or once hooks are registered, a thread
/// waits for it, runs the hooks registered with [`on_parent_gone`] and ends the process.
fn watch_parent(parent: ParentProcess) {
    if super::lock(&PARENT_GONE_HOOKS).is_empty()
        && sys::kill_on_readable(parent.channel(), true).unwrap_or(false)
    {
        let previous = super::lock(&ARMED).replace((sys::pid(), parent.clone()));
        // Inherited through a fork: another process's to let go of.
        std::mem::forget(previous);
        // A parent gone before the watch was armed raised no event.
        if matches!(sys::wait_readable(&[parent.handle()], Some(Duration::ZERO)), Ok(r) if r[0]) {
            parent_gone();
        }
        return;
    }
    watch_with_thread(parent);
}

/// Stops the OS's watch, if this process armed one; returns the parent it watched.
fn disarm() -> Option<ParentProcess> {
    let mut armed = super::lock(&ARMED);
    match armed.take() {
        Some((pid, parent)) if pid == sys::pid() => {
            let _ = sys::kill_on_readable(parent.channel(), false);
            Some(parent)
        }
        inherited => {
            std::mem::forget(inherited);
            None
        }
    }
}

/// Runs the hooks registered with [`on_parent_gone`] and ends the process.
fn parent_gone() -> ! {
    let hooks = super::lock(&PARENT_GONE_HOOKS).clone();
    for hook in hooks {
        let _ = std::panic::catch_unwind(hook);
    }
    sys::exit_now(1)
}

/// The thread of [`watch_parent`]: waits for the channel to turn readable.
fn watch_with_thread(parent: ParentProcess) {
    let spawned = std::thread::Builder::new()
        .name("multiprocess-parent-watch".into())
        .spawn(move || {
            loop {
                match sys::wait_readable(&[parent.handle()], None) {
                    Ok(ready) if ready[0] => parent_gone(),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
    if let Err(e) = spawned {
        report_error!("multiprocess: cannot watch the parent: {e}");
    }
}
