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
}

/// What a child tells its parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The child accepted its bootstrap and is about to run the target.
    Started,
    /// The target returned this encoded value.
    Returned(Vec<u8>),
    /// The target panicked with this message.
    Panicked(String),
    /// The arguments or the value could not be (de)coded.
    Failed(String),
    /// The child refused its bootstrap (other executable, garbled message).
    Refused(String),
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
        TEST_REENTRY.with(|t| *t.borrow_mut() = Some(args.clone()));
        lock(&REENTRY).get_or_insert(args);
    } else {
        *lock(&REENTRY) = Some(args);
    }
}
