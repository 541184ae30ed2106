//! What a parent and its child say to each other: the bootstrap the parent sends, the reports
//! the child sends back, and the arguments a child is started with.

use std::ffi::OsString;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lock;
use crate::context::StartMethod;
use crate::registry::Code;

/// Everything a spawned child needs besides the executable.
#[derive(Serialize, Deserialize)]
pub(super) struct Bootstrap {
    pub(super) code: Code,
    pub(super) args: Vec<u8>,
    pub(super) name: String,
    pub(super) ident: Vec<u64>,
    pub(super) authkey: Vec<u8>,
    pub(super) daemon: bool,
    pub(super) parent_pid: u32,
    pub(super) parent_name: String,
    pub(super) method: StartMethod,
    pub(super) reentry: Vec<OsString>,
    /// How many OS handles (inside `args`) follow the bootstrap, out of band.
    pub(super) handles: u32,
    /// The parent's stderr log level (`log::log_to_stderr`; 0: off), which a child inherits.
    pub(super) log_level: u8,
    /// The child re-runs a test binary's harness, so it was started with its stdout on the null
    /// device (libtest's `running 1 test` header goes there); the last of the handles is the
    /// parent's stdout, to take back before the target runs.
    pub(super) stdout: bool,
}

/// What a child tells its parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The child accepted its bootstrap and is about to run the target.
    Started,
    /// The target returned this encoded value (never empty: a value of no bytes is not sent,
    /// see `child::run_target`).
    Returned(Vec<u8>),
    /// The target panicked with this message.
    Panicked(String),
    /// The arguments or the value could not be (de)coded.
    Failed(String),
    /// The child refused its bootstrap (other executable, garbled message).
    Refused(String),
}

impl Report {
    /// The encoding of `Report::Returned(value)` up to the value's own bytes, for a value of
    /// `len` bytes: what `wire::encode` writes before them (the variant's index and the
    /// length, as postcard's varints). A child sends its value after it as it is, neither
    /// encoded nor copied again (`child::send`); the test below holds it to postcard's
    /// encoding.
    pub(super) fn returned_prefix(len: usize) -> ([u8; 11], usize) {
        const RETURNED: u8 = 1;
        let mut out = [0u8; 11];
        out[0] = RETURNED;
        let (mut n, mut rest) = (1, len as u64);
        while rest >= 0x80 {
            out[n] = (rest as u8 & 0x7f) | 0x80;
            rest >>= 7;
            n += 1;
        }
        out[n] = rest as u8;
        (out, n + 1)
    }
}

/// The arguments a spawned child is started with (after `argv[0]`): the parent's own arguments,
/// as Python restores `sys.argv`, or in a test binary the filter that reaches a test calling
/// `init_test`. A child passes on what it was given.
static REENTRY: Mutex<Option<Vec<OsString>>> = Mutex::new(None);

thread_local! {
    /// In a test binary: the arguments that reach the test running on this thread.
    static TEST_REENTRY: std::cell::RefCell<Option<Vec<OsString>>> =
        const { std::cell::RefCell::new(None) };
}

/// The arguments a child started now gets (see [`REENTRY`]).
pub(crate) fn reentry_args() -> Vec<OsString> {
    TEST_REENTRY
        .with(|t| t.borrow().clone())
        .or_else(|| lock(&REENTRY).clone())
        .unwrap_or_else(|| std::env::args_os().skip(1).collect())
}

/// Sets the arguments children get: in a test binary, those that reach the test running on
/// the calling thread (and, for other threads, the first test's); in a child, what it was given.
pub(crate) fn set_reentry(args: Vec<OsString>, this_thread_only_first: bool) {
    if this_thread_only_first {
        TEST_MODE.store(true, std::sync::atomic::Ordering::Relaxed);
        HARNESS.store(true, std::sync::atomic::Ordering::Relaxed);
        TEST_REENTRY.with(|t| *t.borrow_mut() = Some(args.clone()));
        lock(&REENTRY).get_or_insert(args);
    } else {
        *lock(&REENTRY) = Some(args);
    }
}

/// Set when children started from this process re-run a test binary's harness: a test called
/// `init_test` here, or this process is such a child (see [`Bootstrap::stdout`]).
static HARNESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether children started from this process re-run a test binary's harness.
pub(crate) fn runs_harness() -> bool {
    HARNESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// In a child of a test binary: its own children re-run the harness too.
pub(super) fn set_harness(on: bool) {
    HARNESS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Set once a test of this binary called `init_test` (never in the children it starts).
static TEST_MODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// In a test binary, refuses a spawn from a test that did not call `init_test()` itself: its
/// child would re-run the test binary filtered to *another* test (the first that registered),
/// so the test would pass or fail by its neighbours. The calling thread counts as such a test
/// when libtest named it after one of this binary's tests (listed once, with `--list`); other
/// threads (a pool's, the test's own helpers) go through the first registered test, as before.
pub(crate) fn check_test_thread() -> crate::error::Result<()> {
    if !TEST_MODE.load(std::sync::atomic::Ordering::Relaxed)
        || TEST_REENTRY.with(|t| t.borrow().is_some())
    {
        return Ok(());
    }
    let thread = std::thread::current();
    let Some(name) = thread.name().filter(|n| *n != "main") else {
        return Ok(());
    };
    if !test_names().contains(name) {
        return Ok(());
    }
    Err(crate::error::Error::State(format!(
        "test `{name}` starts a process but did not call multiprocess::init_test() first: a \
         spawned child re-runs this test binary filtered to the test that starts it, whose \
         init_test() turns it into the child (make init_test() the test's first line)"
    )))
}

/// The tests of this binary, as libtest lists them (empty if it cannot be asked). A listing
/// that came back empty is asked again, twice at most: the test asking is in it, so empty
/// means the listing process failed (under Wine, now and then, it does).
fn test_names() -> &'static std::collections::HashSet<String> {
    static NAMES: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let Ok(exe) = std::env::current_exe() else {
            return Default::default();
        };
        let list = || {
            let listed = std::process::Command::new(&exe)
                .args(["--list", "--format", "terse"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output();
            listed.map_or_else(
                |_| Default::default(),
                |out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| l.strip_suffix(": test"))
                        .map(str::to_owned)
                        .collect::<std::collections::HashSet<_>>()
                },
            )
        };
        (0..3)
            .map(|_| list())
            .find(|names| !names.is_empty())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::Report;

    /// `returned_prefix` is what postcard writes before a returned value's bytes, for values
    /// whose lengths take one to four bytes of varint.
    #[test]
    fn returned_prefix_is_postcards() {
        for len in [0usize, 1, 5, 127, 128, 300, 16_383, 16_384, 70_000, 1 << 21] {
            let value = vec![7u8; len];
            let encoded = crate::wire::encode(&Report::Returned(value.clone())).expect("encodes");
            let (prefix, n) = Report::returned_prefix(len);
            assert_eq!(&encoded[..n], &prefix[..n], "length {len}");
            assert_eq!(&encoded[n..], &value[..], "length {len}");
        }
    }
}
