//! The MPI calls the `mpi` crate does not wrap, and communicators that threads share (cargo
//! feature `mpi`).

use std::ffi::{CString, OsString, c_char};
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mpi::ffi;
use mpi::raw::AsRaw;
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
