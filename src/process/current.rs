//! This process: who it is (`current_process`), who started it (`parent_process`), and its
//! authentication key.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{Shared, lock};
use crate::sys;
use crate::sys::fork_lock::StaticArc;

// ---------------------------------------------------------------------------------------------
// Authentication keys

/// A process's authentication key (Python's `AuthenticationString`): 32 random bytes in the main
/// process, inherited by children. It deliberately implements neither `Serialize` nor `Display`,
/// so it cannot leak into a message or a log by accident; it travels only in a child's bootstrap.
///
/// ```compile_fail
/// // An AuthKey cannot be serialised.
/// fn needs_serialize<T: serde::Serialize>(_: T) {}
/// needs_serialize(multiprocess::current_process().authkey());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(pub(super) Key);

impl AuthKey {
    /// 32 bytes from the OS's random source.
    pub(crate) fn random() -> AuthKey {
        let mut key = Key::from_elem(0, 32);
        if let Err(e) = getrandom::fill(&mut key) {
            // Without randomness, a predictable key would be a silent security hole.
            panic!("multiprocess: the OS random source failed: {e}");
        }
        AuthKey(key)
    }
}

impl Deref for AuthKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for AuthKey {
    fn from(v: Vec<u8>) -> Self {
        AuthKey(Key::from_vec(v))
    }
}

impl From<&[u8]> for AuthKey {
    fn from(v: &[u8]) -> Self {
        AuthKey(Key::from_slice(v))
    }
}

impl<const N: usize> From<&[u8; N]> for AuthKey {
    fn from(v: &[u8; N]) -> Self {
        AuthKey(Key::from_slice(v))
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(<{} bytes>)", self.0.len())
    }
}

// ---------------------------------------------------------------------------------------------
// This process

crate::sys::forked_child_data! {
    /// This process's record (Python's `_current_process`): a [`Shared`], as its parent keeps of
    /// it. The main process's is made on first use, a spawned child's from its bootstrap; a
    /// forked child's is its own copy of the record its parent made of it (Python's forked child
    /// likewise becomes the `Process` object itself), so becoming the child copies and allocates
    /// nothing (issue 19: after a fork, the child's first allocation alone cost some 10 µs).
    /// Read without a lock and replaced whole (see [`StaticArc`]): becoming a forked child writes
    /// a static, not a heap page of the parent's, and a start reads it without writing a lock.
    static ME: StaticArc<Shared> = StaticArc::new();
}

/// This process's record.
pub(super) fn me() -> Arc<Shared> {
    ME.get(Shared::main_process)
}

/// Calls `f` with this process's record, borrowed: no counted reference is taken (a write of
/// the record's page, in a fan-out one copy per fork: issue 19).
pub(super) fn with_me<R>(f: impl FnOnce(&Shared) -> R) -> R {
    ME.with(Shared::main_process, f)
}

/// A thread's copy of this process's name and authkey (see [`name_and_authkey`]): from which
/// record, at which count of its changes. Kept inline in a `Cell`, so that reading it writes
/// nothing (a `RefCell`'s borrow is a write of the thread's page: in a fan-out, one copy per
/// fork, issue 19); a name or key longer than its room is read from the record each time.
#[derive(Clone, Copy)]
struct Seen {
    record: usize,
    renamed: usize,
    name: Inline,
    authkey: Inline,
}

/// Up to 64 bytes, inline.
#[derive(Clone, Copy)]
struct Inline {
    len: u8,
    bytes: [u8; 64],
}

impl Inline {
    fn new(from: &[u8]) -> Option<Inline> {
        let mut bytes = [0; 64];
        bytes.get_mut(..from.len())?.copy_from_slice(from);
        Some(Inline {
            len: from.len() as u8,
            bytes,
        })
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

thread_local! {
    /// This thread's [`Seen`].
    static SEEN: std::cell::Cell<Option<Seen>> = const { std::cell::Cell::new(None) };
}

/// This process's name and authkey, as a new child copies them: from a copy this thread made
/// while the record has not changed since (`Shared::renamed`), so that the record's locks are
/// not taken (each a write of its page: in a fan-out, one copy per fork, issue 19).
pub(super) fn name_and_authkey() -> (ShortName, Key) {
    with_me(|me| {
        let record = std::ptr::from_ref(me) as usize;
        let renamed = me.renamed.load(Ordering::Acquire);
        if let Some(seen) = SEEN
            .get()
            .filter(|s| s.record == record && s.renamed == renamed)
        {
            if let Ok(name) = std::str::from_utf8(seen.name.get()) {
                return (ShortName::new(name), Key::from_slice(seen.authkey.get()));
            }
        }
        let name = lock(&me.name).clone();
        let authkey = lock(&me.authkey).0.clone();
        if let (Some(n), Some(a)) = (Inline::new(name.as_str().as_bytes()), Inline::new(&authkey)) {
            SEEN.set(Some(Seen {
                record,
                renamed,
                name: n,
                authkey: a,
            }));
        }
        (name, authkey)
    })
}

crate::sys::forked_child_data! {
    /// This process's daemon flag, as in [`ME`], read without its lock: every `start` asks, and a
    /// lock taken between two forks is a page written, hence copied (issue 19).
    static DAEMONIC: AtomicBool = AtomicBool::new(false);
}

crate::sys::forked_child_data! {
    /// Counts processes constructed here (Python's `_process_counter` counts from 1; this from
    /// 0); reset in every child: with the other statics a forked child writes (see
    /// `sys::forked_child_data`).
    pub(super) static COUNTER: AtomicU64 = AtomicU64::new(0);
}

/// A process's ident (Python's `_identity`: `1:2:3` is its parent's and its number), inline up
/// to a depth of four: one allocation less per start (each a heap page written between two
/// forks, issue 19).
pub(crate) type Ident = smallvec::SmallVec<[u64; 4]>;

/// An authkey's bytes, inline up to 32 (the size of a random one), as [`Ident`].
pub(crate) type Key = smallvec::SmallVec<[u8; 32]>;

/// A process's name (its own, or its parent's a record keeps), inline up to 32 bytes (longer
/// ones on the heap), as [`Ident`].
#[derive(Clone, Default)]
pub(crate) struct ShortName(smallvec::SmallVec<[u8; 32]>);

impl ShortName {
    pub(crate) fn new(name: &str) -> ShortName {
        ShortName(smallvec::SmallVec::from_slice(name.as_bytes()))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Made of `&str`s only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Write for ShortName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a new child is: sent to a spawned child at start, which makes its record of it.
pub(crate) struct Identity {
    pub(crate) name: ShortName,
    pub(crate) ident: Ident,
    pub(crate) authkey: Key,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: ShortName,
}

/// In a child forked by a fork server: cuts the server's own channel to its parent, which the
/// child inherited (only the channel it was given is its own, as in a spawned child). The
/// server's record is never dropped here (one count of it is forgotten): the descriptor's
/// number may be reused at once.
pub(crate) fn cut_parent_channel() {
    let server = me();
    if let Some(channel) = server.to_parent.get() {
        sys::close_abandoned(sys::channel_handle(channel));
    }
    std::mem::forget(server);
}

crate::sys::forked_child_code! {
    /// In a new child: become the process `record` describes, whose `to_parent` holds our end of
    /// the channel to the parent (the parent's record is left behind unfreed, see [`StaticArc`]).
    pub(crate) fn become_child(record: Arc<Shared>) {
        DAEMONIC.store(record.daemon.load(Ordering::Relaxed), Ordering::Relaxed);
        ME.set(record);
        COUNTER.store(0, Ordering::Relaxed);
    }
}

/// The current process, as Python's `multiprocessing.current_process()`.
///
/// # Panics
/// The first use in the main process draws its 32-byte authkey from the OS random source, and
/// panics if that fails (as Python's `os.urandom` raises): a predictable key would be worse.
///
/// ```
/// let me = multiprocess::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(me.is_alive());
/// ```
pub fn current_process() -> CurrentProcess {
    CurrentProcess(())
}

/// A view of the calling process (see [`current_process`]).
#[derive(Debug, Clone, Copy)]
pub struct CurrentProcess(());

impl CurrentProcess {
    /// `MainProcess` in the main process; a child's name as its parent set it.
    pub fn name(&self) -> String {
        lock(&me().name).to_string()
    }

    /// Renames this process (affects the names of processes it creates afterwards only through
    /// their identity, as in Python).
    pub fn set_name(&self, name: impl Into<String>) {
        me().set_name(ShortName::new(&name.into()));
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        sys::pid()
    }

    /// Python's `_identity`: empty in the main process, `[3]` in `Process-3`, `[3, 1]` in its
    /// first child.
    pub fn ident(&self) -> Vec<u64> {
        me().ident.to_vec()
    }

    /// Whether this process is daemonic (then it may not start children).
    pub fn daemon(&self) -> bool {
        DAEMONIC.load(Ordering::Relaxed)
    }

    /// This process's authentication key.
    pub fn authkey(&self) -> AuthKey {
        lock(&me().authkey).clone()
    }

    /// Replaces this process's authentication key (children started afterwards inherit it).
    pub fn set_authkey(&self, key: impl Into<AuthKey>) {
        let key = key.into();
        me().set_authkey(key);
    }

    /// Always true: the calling process is running.
    pub fn is_alive(&self) -> bool {
        true
    }

    /// Always `None`: the calling process has not exited.
    pub fn exitcode(&self) -> Option<i32> {
        None
    }
}

/// The process that started this one, as Python's `multiprocessing.parent_process()`: `None` in
/// the main process.
pub fn parent_process() -> Option<ParentProcess> {
    ParentProcess::of(me())
}

/// The parent of the calling process (see [`parent_process`]). Its liveness comes from the
/// channel whose other end only the parent holds: when the parent dies, it reads as closed.
#[derive(Clone)]
pub struct ParentProcess {
    /// This process's record: the parent's name and pid, and our end of the channel (set,
    /// for good, before the record became this process's).
    record: Arc<Shared>,
}

impl fmt::Debug for ParentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParentProcess")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        self.record.parent_name.as_str()
    }

    /// The parent's pid (as it was when this process started).
    pub fn pid(&self) -> u32 {
        self.record.creator
    }

    /// True until the parent process ends.
    pub fn is_alive(&self) -> bool {
        !self.join_timeout(Duration::ZERO)
    }

    /// Waits until the parent ends. To wait for it together with other objects, pass it to
    /// [`wait`](crate::wait).
    pub fn join(&self) {
        self.join_until(None);
    }

    /// Waits until the parent ends or `timeout` passes; true if it ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Some(timeout))
    }

    fn join_until(&self, timeout: Option<Duration>) -> bool {
        let h = self.handle();
        // A poll error means the descriptor is unusable: treat the parent as gone.
        sys::wait_readable(&[h], timeout).map_or(true, |r| r[0])
    }
}

impl ParentProcess {
    /// The parent of the process `record` describes, once its channel to it is set.
    pub(super) fn of(record: Arc<Shared>) -> Option<ParentProcess> {
        record
            .to_parent
            .get()
            .is_some()
            .then_some(ParentProcess { record })
    }

    /// Our end of the channel whose other end only the parent holds (it sends nothing after
    /// the bootstrap).
    pub(super) fn channel(&self) -> &sys::Channel {
        match self.record.to_parent.get() {
            Some(channel) => channel,
            // Never: made only of a record whose channel is set (`of`), and a `OnceLock`
            // stays set.
            None => unreachable!("a parent process without its channel"),
        }
    }

    /// The handle that becomes readable when the parent ends: our end of the channel.
    pub(crate) fn handle(&self) -> sys::WaitHandle<'_> {
        sys::channel_handle(self.channel())
    }
}
