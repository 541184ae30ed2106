//! The MPI calls the `mpi` crate does not wrap, and communicators that threads share (cargo
//! feature `mpi`).

use std::ffi::{CString, OsString, c_char};
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mpi::ffi;
use mpi::raw::{AsRaw, AsRawMut};
use mpi::topology::{Communicator, InterCommunicator, MergeOrder, SimpleCommunicator};

/// A communicator that any thread may use, for as long as the program runs (the pool's threads
/// all talk to the worker ranks through one).
pub(crate) struct Comm(SimpleCommunicator);

// SAFETY: MPI is initialised with `MPI_THREAD_MULTIPLE` before any `Comm` exists (the pool
// refuses a lower level), under which a communicator handle may be used by any thread, several
// at once. A `Comm` is never freed (see `leak`), so no thread can use a handle freed by another.
unsafe impl Send for Comm {}
// SAFETY: as for `Send`: every operation on the handle is an MPI call, thread-safe at
// `MPI_THREAD_MULTIPLE`; the wrapper has no state of its own.
unsafe impl Sync for Comm {}

impl Deref for Comm {
    type Target = SimpleCommunicator;
    fn deref(&self) -> &SimpleCommunicator {
        &self.0
    }
}

/// Keeps a communicator for the rest of the program (MPI frees it at `MPI_Finalize`), with
/// errors returned instead of aborting the job.
fn leak(comm: SimpleCommunicator) -> &'static Comm {
    errors_return(&comm);
    Box::leak(Box::new(Comm(comm)))
}

/// `MPI_COMM_WORLD`, with errors returned (see [`errors_return`]). Called once MPI is
/// initialised.
pub(crate) fn world() -> &'static Comm {
    static WORLD: OnceLock<&'static Comm> = OnceLock::new();
    WORLD.get_or_init(|| leak(SimpleCommunicator::world()))
}

/// Makes MPI errors on `comm` return to the caller instead of aborting the whole job (MPI's
/// default): a pool over MPI ranks outlives a rank that died, noticing it by silence (see
/// `pool::backend::mpi`).
fn errors_return(comm: &SimpleCommunicator) {
    // SAFETY: MPI is initialised (a communicator exists); the handle is valid while `comm` is
    // borrowed; the error handler is MPI's own predefined one.
    unsafe {
        ffi::MPI_Comm_set_errhandler(comm.as_raw(), ffi::RSMPI_ERRORS_RETURN);
    }
}

/// In a process started by `MPI_Comm_spawn`: the communicator with its parent, merged so that
/// the parent is rank 0 and this process one of the ranks after it.
pub(crate) fn parent() -> Option<&'static Comm> {
    let parent = world().parent()?;
    Some(leak(parent.merge(MergeOrder::High)))
}

/// Before MPI is initialised in a process no launcher started (a "singleton", which starts its
/// own runtime daemon): asks that runtime to survive the death of a process it spawns (Open MPI's
/// `orte_enable_recovery`, read from the environment), unless the user set it. Without it, one
/// spawned rank dying aborts the whole job, this process included.
pub(crate) fn ask_recovery() {
    const RECOVERY: &str = "OMPI_MCA_orte_enable_recovery";
    if std::env::var_os(RECOVERY).is_none() {
        // SAFETY: std serialises this with its own environment readers; the crate reads the
        // environment only through std, and MPI (the only C library here that reads it) is not
        // initialised yet. A foreign library calling `getenv` on another thread at this moment
        // is the residual risk, as with any `set_var` in a threaded program.
        unsafe { std::env::set_var(RECOVERY, "1") };
    }
}

/// Starts `n` processes running `program` with `args` (`MPI_Comm_spawn` from this process
/// alone), placed one a slot and beyond the slots if need be (Open MPI's
/// `map_by slot:OVERSUBSCRIBE`, where a slot is a core unless a hostfile says otherwise), and
/// returns the communicator merged with them: this process is rank 0, they are ranks 1 to `n`.
pub(crate) fn spawn(program: &Path, args: &[OsString], n: usize) -> Result<&'static Comm, String> {
    let cstring = |b: &[u8]| CString::new(b).map_err(|_| "a NUL byte in the command".to_string());
    let program = cstring(program.as_os_str().as_bytes())?;
    let args = args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*mut c_char> = args
        .iter()
        .map(|a| a.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let count = i32::try_from(n).map_err(|_| format!("{n} processes are too many"))?;
    let (key, value) = (c"map_by", c"slot:OVERSUBSCRIBE");
    let mut errors = vec![0i32; n];
    // SAFETY: MPI is initialised (`world()` was called first by the caller); every pointer
    // passed lives until the calls return: `program` and `args` (which `argv` points into, NULL
    // terminated), the info key and value, `errors` with room for `n` codes, and the out
    // handles. The info object is freed after the spawn, which copied what it needed.
    let (code, inter) = unsafe {
        errors_return(&SimpleCommunicator::self_comm());
        let mut info = ffi::RSMPI_INFO_NULL;
        ffi::MPI_Info_create(&mut info);
        ffi::MPI_Info_set(info, key.as_ptr(), value.as_ptr());
        let mut inter = ffi::RSMPI_COMM_NULL;
        let code = ffi::MPI_Comm_spawn(
            program.as_ptr(),
            argv.as_mut_ptr(),
            count,
            info,
            0,
            ffi::RSMPI_COMM_SELF,
            &mut inter,
            errors.as_mut_ptr(),
        );
        ffi::MPI_Info_free(&mut info);
        (code, inter)
    };
    let failed = errors
        .iter()
        .filter(|&&e| e != ffi::MPI_SUCCESS as i32)
        .count();
    let failure =
        || format!("MPI_Comm_spawn of {n} processes failed (error {code}; {failed} not started)");
    if code != ffi::MPI_SUCCESS as i32 || failed > 0 {
        return Err(failure());
    }
    // SAFETY: `inter` is what MPI_Comm_spawn just returned (checked to be an intercommunicator,
    // else `None`), owned from here by the wrapper (which frees it when dropped, after the
    // merge).
    let inter = unsafe { InterCommunicator::try_from_raw(inter) }.ok_or_else(failure)?;
    Ok(leak(inter.merge(MergeOrder::Low)))
}

/// Ends this job's launcher when it would otherwise never exit: Open MPI 4's `mpirun`, after a
/// host of the job was lost (its daemon killed or silent), waits for that daemon forever, even
/// after `MPI_Abort`. Called by rank 0 at the very end, when ranks were lost and everything was
/// delivered and flushed. Acts only when the job spans several hosts (Open MPI's
/// `OMPI_COMM_WORLD_LOCAL_SIZE` below `OMPI_COMM_WORLD_SIZE`; on one host `MPI_Abort` ends
/// `mpirun` with status 0) and this process's parent is `mpirun` (`mpiexec`, `orterun`): sends it
/// SIGINT twice, 100 ms apart, which is `mpirun`'s "abort, then forcibly terminate" (a second
/// Ctrl-C): it kills its local processes and exits with status 1, and the daemons on the other
/// hosts end their ranks when they lose it. Returns whether the launcher is gone (within 3 s).
pub(crate) fn end_launcher() -> bool {
    let count = |name: &str| std::env::var(name).ok()?.parse::<u32>().ok();
    match (
        count("OMPI_COMM_WORLD_SIZE"),
        count("OMPI_COMM_WORLD_LOCAL_SIZE"),
    ) {
        (Some(size), Some(local)) if local < size => {}
        _ => return false,
    }
    let launcher = std::os::unix::process::parent_id();
    let Ok(name) = std::fs::read_to_string(format!("/proc/{launcher}/comm")) else {
        return false;
    };
    if !matches!(name.trim(), "mpirun" | "mpiexec" | "orterun") {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(launcher) else {
        return false;
    };
    // Let the launcher forward what this process last wrote before it is told to go.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: setting a signal's disposition to "ignore" has no memory effects; `mpirun`'s
    // first SIGINT makes it send SIGTERM to this process, which must outlive it to send the
    // second one (it is set back below).
    let before = unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    for _ in 0..2 {
        // SAFETY: `kill` only sends a signal; `pid` is this process's parent, checked above to
        // be the launcher.
        unsafe { libc::kill(pid, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = Instant::now() + Duration::from_secs(3);
    let gone = loop {
        if std::os::unix::process::parent_id() != launcher {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if before != libc::SIG_ERR {
        // SAFETY: as above; `before` is the disposition this process had.
        unsafe { libc::signal(libc::SIGTERM, before) };
    }
    gone
}

/// A non-blocking MPI operation under way (a send, or the receive of a probed message) and the
/// buffer it reads or fills, kept together until MPI is done with them. Every wait of rank 0 on
/// a rank has a deadline kept by the caller ([`Pending::done`] never blocks): a blocking send
/// to a rank that died, stopped, or that Open MPI's TCP transport failed to connect to
/// ("connect() … failed") never returns, and neither does a blocking receive of a message
/// whose sender died mid-way.
///
/// Dropped before it is done, it is abandoned: the request and the buffer are leaked (MPI may
/// still touch the buffer; nothing can reclaim it safely), which happens only for a rank given
/// up.
pub(crate) struct Pending {
    request: ffi::MPI_Request,
    buf: Vec<u8>,
    done: bool,
}

// SAFETY: the request handle is used only through MPI calls, thread-safe at
// `MPI_THREAD_MULTIPLE` (see `Comm`); the buffer is owned.
unsafe impl Send for Pending {}

impl Pending {
    fn new(buf: Vec<u8>) -> Pending {
        Pending {
            // SAFETY: reading MPI's constant for "no request" (set when the library loads).
            request: unsafe { ffi::RSMPI_REQUEST_NULL },
            buf,
            done: false,
        }
    }

    /// Whether MPI is done with it (`MPI_Test`; an operation that failed is done too: the rank
    /// is then noticed by its silence).
    pub(crate) fn done(&mut self) -> bool {
        if !self.done {
            let mut flag = 0;
            // SAFETY: `request` came from `MPI_Isend`/`MPI_Imrecv` and is not complete (MPI sets
            // it to `MPI_REQUEST_NULL` when it is, and `done` is set then); `MPI_STATUS_IGNORE`
            // is MPI's own null status.
            let code =
                unsafe { ffi::MPI_Test(&mut self.request, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
            self.done = flag != 0 || code != ffi::MPI_SUCCESS as i32;
        }
        self.done
    }

    /// Polls until done or `until`; whether it is done. For its first 5 ms it only yields the
    /// CPU between two polls (a message of a megabyte takes well under that, and Open MPI moves
    /// its parts only while someone calls it), then sleeps, 50 µs doubling to 1 ms.
    pub(crate) fn wait_until(&mut self, until: Instant) -> bool {
        const SPIN: Duration = Duration::from_millis(5);
        let spin_until = Instant::now() + SPIN;
        let mut pause = Duration::from_micros(50);
        loop {
            if self.done() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            if now < spin_until {
                std::thread::yield_now();
            } else {
                std::thread::sleep(pause.min(until - now));
                pause = (pause * 2).min(Duration::from_millis(1));
            }
        }
    }

    /// The buffer, once done (`None` before: it is abandoned then, see the type's docs).
    pub(crate) fn into_buffer(mut self) -> Option<Vec<u8>> {
        if self.done() {
            Some(std::mem::take(&mut self.buf))
        } else {
            None
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut finalized = 0;
        // SAFETY: `MPI_Finalized` may be called at any time, even after `MPI_Finalize`.
        unsafe { ffi::MPI_Finalized(&mut finalized) };
        let done = if finalized == 0 {
            self.done()
        } else {
            self.done
        };
        if !done {
            std::mem::forget(std::mem::take(&mut self.buf));
        }
    }
}

impl Comm {
    /// Starts sending `buf` to `rank` with `tag` (`MPI_Isend`); MPI keeps the messages of one
    /// sender to one receiver in the order they were started.
    pub(crate) fn start_send(&self, rank: i32, tag: i32, buf: Vec<u8>) -> Pending {
        let mut pending = Pending::new(buf);
        let count = i32::try_from(pending.buf.len()).unwrap_or(i32::MAX);
        // SAFETY: the buffer is owned by `pending`, which keeps it (or leaks it) until MPI is
        // done with it; `count` bytes of it are valid; the communicator is valid for the
        // program (see `leak`); `request` is written by MPI.
        let code = unsafe {
            ffi::MPI_Isend(
                pending.buf.as_ptr().cast(),
                count,
                ffi::RSMPI_UINT8_T,
                rank,
                tag,
                self.0.as_raw(),
                &mut pending.request,
            )
        };
        pending.done = code != ffi::MPI_SUCCESS as i32;
        pending
    }
}

/// Starts receiving a probed `message` of `len` bytes into `buf` after its first `at` bytes
/// (`MPI_Imrecv`; `buf` is resized to `at + len`).
pub(crate) fn start_receive(
    mut message: mpi::point_to_point::Message,
    mut buf: Vec<u8>,
    at: usize,
    len: usize,
) -> Pending {
    buf.resize(at + len, 0);
    let mut pending = Pending::new(buf);
    let count = i32::try_from(len).unwrap_or(i32::MAX);
    // SAFETY: `buf[at..]` has `len` bytes and is kept by `pending` (or leaked) until MPI is done
    // with it; `message` is a matched message not yet received, which `MPI_Imrecv` consumes
    // (setting the handle to `MPI_MESSAGE_NULL`, as its `Drop` expects).
    let code = unsafe {
        ffi::MPI_Imrecv(
            pending.buf.as_mut_ptr().add(at).cast(),
            count,
            ffi::RSMPI_UINT8_T,
            message.as_raw_mut(),
            &mut pending.request,
        )
    };
    pending.done = code != ffi::MPI_SUCCESS as i32;
    if pending.done {
        // Not consumed: its `Drop` would panic on a message never received.
        std::mem::forget(message);
    }
    pending
}
