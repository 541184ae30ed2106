//! Start-up: [`init`] (and [`init_test`]), where a program becomes the child it was started
//! as, or an MPI rank a pool's worker, and registers what the features below it need from the
//! top (the fork server's way to start children); and [`exit`]. The halves of a start are in
//! `process::start` (the parent's) and `process::child` (the child's).

use std::ffi::OsString;

use crate::panics::report_error;
use crate::process::{self, child, handshake, start};
use crate::sys;

/// Call as the first line of `main` (the Rust form of `if __name__ == "__main__":`).
///
/// In a process started by this crate's spawn method it runs the child's target and exits, never
/// returning; anywhere else it returns at once. Code before it runs again in every spawned
/// child, so put nothing before it.
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     multiprocess::init();
///     // ... the program, which may start processes
/// }
/// ```
pub fn init() {
    process::mark_initialised();
    // The fork server stands above processes (it needs connections): it registers its way to
    // start children, and what it holds across a fork, from here.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        start::serve_forks_with(crate::forkserver::start_child);
        start::on_fork(&crate::forkserver::FORK_HOOK);
    });
    process::ensure_exit_hook();
    match sys::take_child_channel() {
        // Started by an MPI launcher: ranks other than 0 serve pool workers from here.
        #[cfg(all(feature = "mpi", unix))]
        Ok(None) => crate::pool::enter_mpi(),
        #[cfg(not(all(feature = "mpi", unix)))]
        Ok(None) => {}
        Ok(Some(channel)) => child::run_spawned(channel, None),
        Err(e) => {
            report_error!("multiprocess: cannot take the bootstrap channel: {e}");
            sys::exit_now(1);
        }
    }
}

/// [`init`] for tests: call it as the first line of every `#[test]` that starts processes.
///
/// Test binaries have no `main` of ours, so a spawned child re-runs the test binary filtered to
/// the test that started it (`<test> --exact --include-ignored --nocapture --test-threads=1`), where this call
/// turns it into the child. It relies on libtest naming each test's thread after the test,
/// which it does for every thread count. The child's stdout is the null device until it takes
/// over (Unix and Windows), so libtest's `running 1 test` lines stay out of the output.
///
/// ```text
/// #[test]
/// fn squares_in_a_child() {
///     multiprocess::init_test();
///     // ... start processes as in a program
/// }
/// ```
pub fn init_test() {
    if !sys::child_marker_present() {
        if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
            let args: Vec<OsString> = [
                name,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ]
            .iter()
            .map(OsString::from)
            .collect();
            // Processes started from this test's thread re-enter through this test; those
            // started from other threads through the first test that registered.
            handshake::set_reentry(args, true);
        }
    }
    init();
}

/// Ends the calling process with `code` like `std::process::exit`, after Python's exit policy
/// (daemonic children terminated, all children joined). In a child the parent sees exitcode
/// `code & 0xFF`.
pub fn exit(code: i32) -> ! {
    // Run the policy here rather than trust the C runtime's exit hooks to (MSVC's may not run
    // them on ExitProcess); the hook finds nothing left to do.
    process::exit_function();
    process::flush_stdio();
    std::process::exit(code)
}
