//! Python's `multiprocessing.managers.SharedMemoryManager`: a process that keeps the names of
//! the segments made through it and unlinks them all when it shuts down, or when the process
//! that started it dies.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::process::{Process, lock};
use crate::shared_memory::{self, Item, ShareableList, SharedMemory};

/// A manager of shared memory segments (Python's
/// `multiprocessing.managers.SharedMemoryManager`): every [`SharedMemory`] and
/// [`ShareableList`] made through it is unlinked when it shuts down — on
/// [`shutdown`](Self::shutdown), when it is dropped, and when the process that started it dies
/// (killed outright included).
///
/// As in CPython, a segment is created by the calling process (tracked by its resource tracker,
/// as any) and its name is handed to the manager's process, which unlinks what it was given at
/// the end. A segment already unlinked by then is passed over.
///
/// ```standalone_crate
/// use multiprocess::Process;
/// use multiprocess::managers::SharedMemoryManager;
/// use multiprocess::shared_memory::{ShareableList, SharedMemory};
///
/// fn child(mut list: ShareableList) {
///     list.set(0, list.get(0).unwrap() == 1.into()).unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let mut smm = SharedMemoryManager::start()?;
/// let shm = smm.shared_memory(128)?;
/// let list = smm.shareable_list([1, 2, 3])?;
/// let mut p = Process::new(child, (ShareableList::attach(list.name())?,));
/// p.start()?;
/// p.join()?;
/// assert_eq!(list.get(0)?, true.into());
/// let names = [shm.name().to_owned(), list.name().to_owned()];
/// drop((shm, list));
/// smm.shutdown()?; // both segments are unlinked
/// for name in names {
///     assert!(SharedMemory::attach_untracked(&name).is_err());
/// }
/// # Ok(()) }
/// ```
///
/// **How it is built.** Not on [`Manager`](super::Manager)'s object server: what it holds is a
/// list of names, and its one duty is to unlink them whatever way its owner ends. So it is a
/// small daemonic process of its own (the same [`Process`] and [`Connection`] pieces a
/// `Manager` is made of) that reads names from a pipe only its owner holds. The owner's end
/// closing — a shutdown, or the owner's death — makes it unlink every name it was given (ones
/// still in the pipe included) and exit; no segment waits for the whole process tree to end,
/// as it would with the resource tracker alone, and the tracker warns of no leak. Segments a
/// program leaks by never dropping the manager (e.g. `std::mem::forget`) are left to the
/// resource tracker, which unlinks them when the process tree ends.
pub struct SharedMemoryManager {
    control: Mutex<Option<Connection>>,
    process: Option<Process>,
    /// The process that started it: only that one shuts it down (a forked copy does not).
    owner: u32,
}

/// What the owner tells the manager's process.
#[derive(Serialize, Deserialize)]
enum Command {
    Keep(String),
    Shutdown,
}

/// What the manager's process answers.
#[derive(Serialize, Deserialize, PartialEq)]
enum Answer {
    Ready,
    Kept,
    Done,
}

impl SharedMemoryManager {
    /// Starts the manager's process (Python's `SharedMemoryManager()` + `start()`), by the
    /// default start method, daemonic.
    ///
    /// # Errors
    /// As [`Process::start`].
    pub fn start() -> Result<SharedMemoryManager> {
        // The manager's process must share this process's resource tracker (it unregisters
        // what it unlinks): start the tracker first, for the child to inherit.
        crate::sys::ensure_tracker().map_err(|e| Error::io("starting the resource tracker", e))?;
        let (ours, theirs) = crate::pipe()?;
        let mut process = Process::new(keep_segments, (theirs,))
            .with_name("SharedMemoryManager")
            .with_daemon(true);
        process.start()?;
        match ours.recv::<Answer>() {
            Ok(Answer::Ready) => Ok(SharedMemoryManager {
                control: Mutex::new(Some(ours)),
                process: Some(process),
                owner: std::process::id(),
            }),
            other => {
                let _ = process.kill();
                let _ = process.join();
                Err(match other {
                    Err(e) => e,
                    Ok(_) => Error::Codec("the SharedMemoryManager answered out of turn".into()),
                })
            }
        }
    }

    /// A new segment of `size` bytes that the manager unlinks when it shuts down (Python's
    /// `smm.SharedMemory(size)`).
    ///
    /// # Errors
    /// As [`SharedMemory::create`]; [`Error::State`] after [`shutdown`](Self::shutdown);
    /// [`Error::Io`] or [`Error::Eof`] if the manager's process is gone (the segment is
    /// unlinked again).
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        let shm = SharedMemory::create(None, size)?;
        if let Err(e) = self.keep(shm.name()) {
            let _ = shm.unlink();
            return Err(e);
        }
        Ok(shm)
    }

    /// A new [`ShareableList`] holding `items` that the manager unlinks when it shuts down
    /// (Python's `smm.ShareableList(sequence)`).
    ///
    /// # Errors
    /// As [`ShareableList::new`] and [`shared_memory`](Self::shared_memory).
    pub fn shareable_list<I>(&self, items: I) -> Result<ShareableList>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        let list = ShareableList::new(items, None)?;
        if let Err(e) = self.keep(list.name()) {
            let _ = list.unlink();
            return Err(e);
        }
        Ok(list)
    }

    /// The manager's process (until [`shutdown`](Self::shutdown)).
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// Hands segment `name` to the manager's process, and waits until it has it.
    fn keep(&self, name: &str) -> Result<()> {
        let control = lock(&self.control);
        let control = control
            .as_ref()
            .ok_or_else(|| Error::state("the SharedMemoryManager was shut down"))?;
        control.send(&Command::Keep(name.to_owned()))?;
        match control.recv::<Answer>()? {
            Answer::Kept => Ok(()),
            _ => Err(Error::Codec(
                "the SharedMemoryManager answered out of turn".into(),
            )),
        }
    }

    /// Unlinks every segment made through the manager and ends its process (Python's
    /// `shutdown()`). The segments' mappings in this and other processes stay valid until
    /// closed. Does nothing a second time, nor in a forked copy of the owner.
    ///
    /// # Errors
    /// As [`Process::join`].
    pub fn shutdown(&mut self) -> Result<()> {
        let control = lock(&self.control).take();
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        if std::process::id() != self.owner {
            // A forked copy: the owner's manager is not ours to stop, nor its child to join.
            std::mem::forget((control, process));
            return Ok(());
        }
        if let Some(control) = control {
            if control.send(&Command::Shutdown).is_ok()
                && control.poll(Some(SHUTDOWN_WAIT)).unwrap_or(false)
            {
                let _ = control.recv::<Answer>();
            }
        }
        process.join_timeout(SHUTDOWN_WAIT)?;
        if process.is_alive()? {
            process.terminate()?;
            process.join()?;
        }
        Ok(())
    }
}

/// How long a shutdown waits for the manager's process to unlink and end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

impl Drop for SharedMemoryManager {
    /// Shuts the manager down (see [`shutdown`](Self::shutdown)).
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryManager")
            .field("pid", &self.process.as_ref().and_then(Process::pid))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// The manager's process

/// The names handed over so far (one manager per process).
static KEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set once the main loop has read everything its owner sent and unlinked it.
static FINISHED: AtomicBool = AtomicBool::new(false);

/// The target of the manager's process: keeps the names its owner sends until told to shut
/// down or the owner's end closes, then unlinks them all.
fn keep_segments(control: Connection) {
    crate::process::on_parent_gone(owner_gone);
    if control.send(&Answer::Ready).is_err() {
        return;
    }
    loop {
        match control.recv::<Command>() {
            Ok(Command::Keep(name)) => {
                lock(&KEPT).push(name);
                if control.send(&Answer::Kept).is_err() {
                    break;
                }
            }
            Ok(Command::Shutdown) => {
                unlink_kept();
                let _ = control.send(&Answer::Done);
                return;
            }
            Err(_) => break,
        }
    }
    unlink_kept();
}

/// Unlinks every name kept so far (holding the list throughout, so that a second caller finds
/// it done).
fn unlink_kept() {
    let mut kept = lock(&KEPT);
    for name in kept.drain(..) {
        if let Err(e) = shared_memory::unlink_by_name(&name) {
            eprintln!("SharedMemoryManager: {e}");
        }
    }
    FINISHED.store(true, Ordering::SeqCst);
}

/// Run when the owner died, just before this process ends: the main loop sees the owner's end
/// close too, after reading what is still in the pipe; give it a moment to unlink all that,
/// then unlink what it has not.
fn owner_gone() {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !FINISHED.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    unlink_kept();
}
