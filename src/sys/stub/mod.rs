//! The stub platform: every target other than Linux, macOS and Windows (mio's `sys/shell` is the
//! model). It provides the whole list in `sys/mod.rs` so that the crate compiles (and its docs
//! build) anywhere; at run time every operation that needs the OS fails with an `io::Error` of
//! kind `Unsupported` that names the supported systems, which the public calls return as
//! [`Error::Io`](crate::Error::Io).
//!
//! No OS object can exist here: the handle, channel, stream, process and region types hold an
//! uninhabited value, so a function that takes one cannot be called and only the functions that
//! would make one need a body (they fail).
//!
//! `MULTIPROCESS_STUB_PLATFORM=1` in the environment of a build (the cfg
//! `multiprocess_stub_platform`, see `build.rs`) selects this module on Linux too, so that
//! `cargo check` there proves it still provides every name (.ci/run does).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{Address, ShmMapping};

/// A value that cannot exist: what the stub's OS objects hold.
#[derive(Debug, Clone, Copy)]
enum Never {}

/// The error of every operation the stub cannot do.
fn unsupported<T>(what: &str) -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{what} is not supported on this target ({}): multiprocess runs on Linux, macOS \
             and Windows, and this build has its stub platform, which only compiles",
            std::env::consts::OS
        ),
    ))
}

/// An owned OS handle (none can exist here). (`pub` because `Handle::into_inner` returns it; it
/// is not reachable from outside the crate by name.)
#[derive(Debug)]
pub struct OwnedHandle(Never);

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        match self.0 {}
    }
}

impl OwnedHandle {
    /// A second handle to the same object.
    pub(crate) fn try_clone(&self) -> io::Result<OwnedHandle> {
        match self.0 {}
    }
}

/// An owned waitable handle (a process sentinel).
pub(crate) type OwnedWaitHandle = OwnedHandle;

/// A handle that [`wait_readable`] can wait on (none can exist here). (`pub` because the hidden
/// `Waitable::wait_handle` returns it; it is not reachable from outside the crate.)
#[derive(Clone, Copy, Debug)]
pub struct WaitHandle<'a>(Never, PhantomData<&'a ()>);

/// Borrows an owned waitable handle.
pub(crate) fn borrow_handle(h: &OwnedHandle) -> WaitHandle<'_> {
    match h.0 {}
}

/// A socket as a waitable handle: there is no waiting here, so an `Unsupported` error.
pub(crate) fn socket_wait_handle<S>(_socket: &S) -> io::Result<WaitHandle<'_>> {
    unsupported("waiting on a socket")
}

/// An OS handle's number as Python's `fileno()` gives it.
pub(crate) fn handle_number(h: WaitHandle<'_>) -> i64 {
    match h.0 {}
}

/// The stub gives public types no OS handle traits: there is no handle to give. (It only
/// names `$handle`, which the other platforms' traits call.)
macro_rules! impl_os_handle {
    ($ty:ty, $handle:ident) => {
        const _: for<'a> fn(&'a $ty) -> Option<$crate::sys::WaitHandle<'a>> = <$ty>::$handle;
    };
}
pub(crate) use impl_os_handle;

/// Waits until a handle is readable: there are none to wait on.
pub(crate) fn wait_readable(
    _handles: &[WaitHandle<'_>],
    _timeout: Option<Duration>,
) -> io::Result<super::Ready> {
    unsupported("waiting on OS handles")
}

// ---- processes ----

/// Signal numbers used by `terminate` and `kill` (POSIX's, for exit codes).
pub(crate) const SIGTERM: i32 = 15;
/// See [`SIGTERM`].
pub(crate) const SIGKILL: i32 = 9;

/// Which child has ended: this platform cannot tell.
pub(crate) fn ended_child() -> super::Ended {
    super::Ended::Unknown
}

/// A child process (none can be started here).
#[derive(Debug)]
pub(crate) struct ProcHandle(Never);

impl ProcHandle {
    /// A child of the fork server: unsupported.
    pub(crate) fn served(
        _pid: super::ServedPid,
        status: OwnedHandle,
        _child_end: OwnedHandle,
    ) -> io::Result<Self> {
        match status.0 {}
    }

    /// Lets go of what it keeps for a child that is over.
    pub(crate) fn let_go(&mut self) {
        match self.0 {}
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        match self.0 {}
    }

    /// A child of the fork server.
    pub(crate) fn is_served(&self) -> bool {
        match self.0 {}
    }

    /// The exitcode, once reaped.
    pub(crate) fn exitcode(&self) -> Option<i32> {
        match self.0 {}
    }

    /// A handle that becomes readable when the child ends.
    pub(crate) fn sentinel(&mut self) -> io::Result<Arc<OwnedWaitHandle>> {
        match self.0 {}
    }

    /// The sentinel if it is open.
    pub(crate) fn sentinel_if_open(&self) -> Option<Arc<OwnedWaitHandle>> {
        match self.0 {}
    }

    /// Reaps the child if it has ended.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<i32>> {
        match self.0 {}
    }

    /// Sends `signal`.
    pub(crate) fn signal(&mut self, _signal: i32) -> io::Result<()> {
        match self.0 {}
    }
}

/// No spawn to silence (see the Unix `QUIET_SPAWN`).
pub(crate) const QUIET_SPAWN: bool = false;

/// Never called (see [`QUIET_SPAWN`]).
pub(crate) fn stdout_handle() -> io::Result<OwnedHandle> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Never called (see [`QUIET_SPAWN`]).
pub(crate) fn restore_stdout(handle: OwnedHandle) -> io::Result<()> {
    match handle.0 {}
}

/// Starting a process: unsupported.
pub(crate) fn spawn(_args: &[OsString], channel: Channel, _quiet: bool) -> io::Result<ProcHandle> {
    match channel.0 {}
}

/// A channel's number for a forked child to let go of: none (no fork here).
pub(crate) fn channel_number(_channel: &Channel) -> i32 {
    -1
}

/// Never called with a number (no fork here).
pub(crate) fn release_inherited(_number: i32) {}

/// Forking: unsupported, so nothing to prepare.
pub(crate) fn prepare_null() {}

/// Forking: unsupported.
pub(crate) fn fork(_child: impl FnOnce()) -> io::Result<ProcHandle> {
    unsupported("the fork start method")
}

/// A fork server's status pipe: unsupported.
pub(crate) fn status_pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    unsupported("a fork server")
}

/// A fork server's status write: never called (no handle exists).
pub(crate) fn write_status(status: OwnedHandle, _code: i32) {
    match status.0 {}
}

/// Fails: unsupported platform.
pub(crate) fn fork_unwatched(_child: impl FnOnce()) -> io::Result<u32> {
    unsupported("the fork start method")
}

/// The fork server's reaper: never made (there is no fork server here).
pub(crate) enum Reaper {}

impl Reaper {
    /// Fails: there is no fork server here.
    pub(crate) fn install() -> io::Result<Reaper> {
        unsupported("the fork start method")
    }

    /// Never called (no reaper exists).
    pub(crate) fn handle(&self) -> WaitHandle<'_> {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn reap(&self, _each: impl FnMut(u32, i32)) {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn keep_high(&self, _handle: OwnedHandle) -> OwnedHandle {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn kept_high(&self, _fd: WaitHandle<'_>) -> bool {
        match *self {}
    }

    /// Never called (no reaper exists).
    pub(crate) fn release_in_child<'a>(&self, _keep: impl Iterator<Item = WaitHandle<'a>>) -> bool {
        match *self {}
    }
}

/// This process's id (std's; where std has none, it panics, as on `wasm32-unknown-unknown`).
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// This process's id (see [`pid`]).
pub(crate) fn current_pid() -> u32 {
    pid()
}

/// Whether process `pid` runs: only this one is known to.
pub(crate) fn process_alive(pid: u32) -> bool {
    pid == self::pid()
}

/// Ends the process with `code` (std's `exit`: the nearest there is to `_exit` here).
pub(crate) fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

/// Runs `f` at exit: here never (no child can need the exit policy).
pub(crate) fn at_exit(_f: extern "C" fn()) {}

/// The name of a signal: none here.
pub(crate) fn signal_name(_signal: i32) -> Option<&'static str> {
    None
}

/// Reopens stdin on the null device: unsupported.
pub(crate) fn stdin_from_null() -> io::Result<()> {
    unsupported("reopening stdin")
}

// ---- a child's start ----

/// The byte stream between a parent and one child (none can exist here).
#[derive(Debug)]
pub(crate) struct Channel(Never);

impl Drop for Channel {
    fn drop(&mut self) {
        match self.0 {}
    }
}

impl Channel {
    /// A second handle to the same channel.
    pub(crate) fn try_clone(&self) -> io::Result<Channel> {
        match self.0 {}
    }
}

impl io::Read for &Channel {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.0 {}
    }
}

impl io::Write for &Channel {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match self.0 {}
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0 {}
    }
}

/// A connected pair of channel ends: unsupported.
pub(crate) fn channel_pair() -> io::Result<(Channel, Channel)> {
    unsupported("a channel to a child process")
}

/// The channel as a waitable handle.
pub(crate) fn channel_handle(channel: &Channel) -> WaitHandle<'_> {
    match channel.0 {}
}

/// A channel end as a plain handle.
pub(crate) fn channel_into_handle(channel: Channel) -> io::Result<OwnedHandle> {
    match channel.0 {}
}

/// A channel end from a handle.
pub(crate) fn channel_from_handle(handle: OwnedHandle) -> io::Result<Channel> {
    match handle.0 {}
}

/// In a spawned child, the bootstrap channel: no process is ever spawned by us here.
pub(crate) fn take_child_channel() -> io::Result<Option<Channel>> {
    Ok(None)
}

/// Never called (no fork here).
pub(crate) fn close_abandoned(_handle: WaitHandle<'_>) {}

/// Whether this process was spawned by us: never here.
pub(crate) fn child_marker_present() -> bool {
    false
}

/// No OS to ask: the caller watches with a thread.
pub(crate) fn kill_on_readable(_channel: &Channel, _on: bool) -> io::Result<bool> {
    Ok(false)
}

/// Reads what is available.
pub(crate) fn read_available(channel: &Channel, _buf: &mut [u8]) -> io::Result<usize> {
    match channel.0 {}
}

/// Writes all of `parts` (no channel exists here).
pub(crate) fn write_all_vectored(channel: &Channel, _parts: &[&[u8]]) -> io::Result<()> {
    match channel.0 {}
}

/// The handles a child gets at its start (none can exist here).
#[derive(Debug)]
pub(crate) struct Transfer(Never);

/// Whether [`transfer_handles`] needs the child's process.
pub(crate) const HANDLES_NEED_CHILD: bool = true;

/// Prepares handles for a child.
pub(crate) fn transfer_handles(
    child: Option<&ProcHandle>,
    _handles: Vec<OwnedHandle>,
) -> io::Result<Transfer> {
    match child {
        Some(child) => match child.0 {},
        None => unsupported("passing handles"),
    }
}

/// Sends prepared handles to a child.
pub(crate) fn send_transfer(channel: &Channel, _transfer: Transfer) -> io::Result<()> {
    match channel.0 {}
}

/// Reads what a channel has, with the handles that come with it.
pub(crate) fn recv_channel(
    channel: &Channel,
    _buf: &mut [u8],
    _arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    match channel.0 {}
}

/// Receives handles sent with [`send_transfer`].
pub(crate) fn recv_handles(
    channel: &Channel,
    _count: usize,
    _read: &[u8],
    _arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    match channel.0 {}
}

// ---- connections ----

/// A byte stream for a `Connection` (none can exist here).
pub(crate) type Stream = Channel;

/// Two connected streams: unsupported.
pub(crate) fn stream_pair(_duplex: bool) -> io::Result<(Stream, Stream)> {
    unsupported("a pipe")
}

/// A stream as a waitable handle.
pub(crate) fn stream_handle(stream: &Stream) -> WaitHandle<'_> {
    match stream.0 {}
}

/// A new owned handle to a stream.
pub(crate) fn stream_to_handle(stream: &Stream) -> io::Result<OwnedHandle> {
    match stream.0 {}
}

/// A stream over a received handle.
pub(crate) fn stream_from_handle(handle: OwnedHandle) -> io::Result<Stream> {
    match handle.0 {}
}

/// Acknowledges what a TCP stream has received.
pub(crate) fn ack_now(stream: &Stream) {
    match stream.0 {}
}

/// Reads what has arrived, with any handles that came along.
pub(crate) fn recv_some(
    stream: &Stream,
    _socket: bool,
    _buf: &mut [u8],
    _arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<usize> {
    match stream.0 {}
}

/// Whether a stream can carry handles.
pub(crate) fn stream_carries_handles(stream: &Stream) -> bool {
    match stream.0 {}
}

/// Sends handles along a stream.
pub(crate) fn send_handles_on(stream: &Stream, _handles: Vec<OwnedHandle>) -> io::Result<()> {
    match stream.0 {}
}

/// Sends a message's frame and then its handles.
pub(crate) fn send_with_handles(
    stream: &Stream,
    _frame: [&[u8]; 2],
    _handles: Vec<OwnedHandle>,
) -> io::Result<()> {
    match stream.0 {}
}

/// The length of the frame that announces `count` handles (none travel here).
pub(crate) fn handles_frame_len(_count: usize) -> u64 {
    0
}

/// Takes the handles a frame announced from those that arrived.
pub(crate) fn claim_handles(
    _frame: &[u8],
    count: usize,
    arrived: &mut VecDeque<OwnedHandle>,
) -> io::Result<Vec<OwnedHandle>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    match arrived.pop_front() {
        Some(h) => match h.0 {},
        None => unsupported("receiving OS handles"),
    }
}

/// A listening socket (none can exist here).
#[derive(Debug)]
pub(crate) struct SocketListener(Never);

impl SocketListener {
    /// Accepts a connection.
    pub(crate) fn accept(&self) -> io::Result<(Stream, String)> {
        match self.0 {}
    }

    /// The TCP address it listens on.
    pub(crate) fn local_tcp_address(&self) -> Option<std::net::SocketAddr> {
        match self.0 {}
    }

    /// Waits up to `timeout` for a client.
    pub(crate) fn wait_for_client(
        &self,
        _timeout: std::time::Duration,
        _pause: &mut std::time::Duration,
    ) -> io::Result<()> {
        match self.0 {}
    }

    /// Accepts a client only if one is waiting.
    pub(crate) fn accept_now(&self) -> io::Result<Option<(Stream, String)>> {
        match self.0 {}
    }
}

/// Listens at `address`: unsupported.
pub(crate) fn listen(_address: &Address) -> io::Result<SocketListener> {
    unsupported("listening for connections")
}

/// Connects to `address`: unsupported.
pub(crate) fn connect(
    _address: &Address,
    _deadline: Option<std::time::Instant>,
) -> io::Result<Stream> {
    unsupported("connecting to a listener")
}

/// A fresh address for a listener: unsupported.
pub(crate) fn default_listener_address() -> io::Result<Address> {
    unsupported("a listener's address")
}

// ---- shared memory ----

/// Anonymous shared memory that processes wait and wake on (none can exist here).
#[derive(Debug)]
pub(crate) struct Region(Never);

impl Region {
    /// A new region: unsupported.
    pub(crate) fn new(_len: usize) -> io::Result<Region> {
        unsupported("shared memory")
    }

    /// Its first byte.
    pub(crate) fn base(&self) -> *mut u8 {
        match self.0 {}
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self.0 {}
    }

    /// Its handles, to travel in a message.
    pub(crate) fn handles(&self) -> io::Result<Vec<OwnedHandle>> {
        match self.0 {}
    }

    /// Lets go of its handles, keeping the memory.
    pub(crate) fn close_handles(&self) {
        match self.0 {}
    }

    /// The region from handles made by [`Region::handles`].
    pub(crate) fn from_handles(handles: Vec<OwnedHandle>) -> io::Result<Region> {
        match handles.into_iter().next() {
            Some(h) => match h.0 {},
            None => unsupported("shared memory"),
        }
    }

    /// Waits while `word` holds `expected`.
    pub(crate) fn wait(&self, _word: &AtomicU32, _expected: u32, _t: Option<Duration>) -> bool {
        match self.0 {}
    }

    /// Wakes up to `n` waiters on `word`.
    pub(crate) fn wake(&self, _word: &AtomicU32, _n: u32) {
        match self.0 {}
    }
}

/// Whether another process's memory can be copied directly: no.
pub(crate) const CROSS_PROCESS_COPY: bool = false;

/// Copies from another process's memory: unsupported.
pub(crate) fn copy_from_process(_pid: u32, _from: usize, _to: &mut [u8]) -> io::Result<()> {
    unsupported("copying from another process")
}

/// Copies into another process's memory: unsupported.
pub(crate) fn copy_to_process(_pid: u32, _from: &[u8], _to: usize) -> io::Result<()> {
    unsupported("copying to another process")
}

/// Asks for huge pages: nothing to ask here.
pub(crate) fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

/// The prefix of shared-memory segment names (POSIX's, as Python's).
pub(crate) const SHM_NAME_PREFIX: &str = "psm_";

/// What a mapping keeps open besides its memory: nothing.
pub(crate) type ShmKeep = ();

/// Unmaps a segment (none can be mapped here).
///
/// # Safety
/// `ptr` and `len` are a mapping made by [`shm_create`] or [`shm_attach`], unmapped once.
pub(crate) unsafe fn shm_unmap(_ptr: NonNull<u8>, _len: usize) {}

/// Creates a named segment: unsupported.
pub(crate) fn shm_create(_name: &str, _size: usize) -> io::Result<ShmMapping> {
    unsupported("shared memory")
}

/// Maps a named segment: unsupported.
pub(crate) fn shm_attach(_name: &str) -> io::Result<ShmMapping> {
    unsupported("shared memory")
}

/// Removes a segment's name: unsupported.
pub(crate) fn shm_unlink(_name: &str) -> io::Result<()> {
    unsupported("shared memory")
}

/// Starts the resource tracker: unsupported.
pub(crate) fn ensure_tracker() -> io::Result<()> {
    unsupported("the resource tracker")
}

/// Tells the tracker a segment was made: unsupported.
pub(crate) fn shm_track(_name: &str) -> io::Result<()> {
    unsupported("the resource tracker")
}

/// Tells the tracker a segment is gone: unsupported.
pub(crate) fn shm_untrack(_name: &str) -> io::Result<()> {
    unsupported("the resource tracker")
}

/// The tracker's pid and its link: none here.
pub(crate) fn tracker_process() -> Option<(u32, i32)> {
    None
}

/// Stops the tracker this process started: there is none.
pub(crate) fn stop_tracker() {}

/// How many handles one datagram carries.
pub(crate) const HANDLES_PER_DATAGRAM: usize = 1;

/// A pair of sockets for handles: unsupported.
pub(crate) fn handle_channel() -> io::Result<(OwnedHandle, OwnedHandle)> {
    unsupported("a channel for OS handles")
}

/// Sends handles in one datagram.
pub(crate) fn send_handles_datagram(
    socket: &OwnedHandle,
    _handles: Vec<OwnedHandle>,
) -> io::Result<()> {
    match socket.0 {}
}

/// Receives handles from one datagram.
pub(crate) fn recv_handles_datagram(
    socket: &OwnedHandle,
    _count: usize,
) -> io::Result<Vec<OwnedHandle>> {
    match socket.0 {}
}

// ---- what `linux`/`macos` give `image` ----

/// Whether `addr` is in the main executable's image: unknown here, so taken as yes (no child
/// can start to look the address up: starting it fails with the stub's error instead).
pub(super) fn in_main_image(_addr: usize) -> bool {
    true
}

/// The executable's build id: none here.
pub(super) fn build_id() -> Option<Vec<u8>> {
    None
}

// ---- the async forms (feature `tokio`) ----

/// Waits, without blocking a tokio worker, until a handle is readable: there are none.
#[cfg(feature = "tokio")]
pub(crate) async fn readable_async(_handles: &[WaitHandle<'_>]) -> io::Result<()> {
    unsupported("waiting on OS handles")
}

/// Waits until a handle is writable.
#[cfg(feature = "tokio")]
pub(crate) async fn writable_async(handle: WaitHandle<'_>) -> io::Result<()> {
    match handle.0 {}
}

/// Reads what has arrived without blocking (as [`recv_some`]: no stream exists).
pub(crate) use self::recv_some as recv_now;

/// Writes what fits without blocking.
pub(crate) fn send_now(stream: &Stream, _socket: bool, _buf: &[u8]) -> io::Result<usize> {
    match stream.0 {}
}

/// Waits until a stream can take bytes.
pub(crate) fn wait_writable(stream: &Stream, _timeout: Option<Duration>) -> io::Result<bool> {
    match stream.0 {}
}

/// Waits until a client waits at `listener` (none can exist here).
#[cfg(feature = "tokio")]
pub(crate) async fn acceptable_async(
    listener: &SocketListener,
    _pause: &mut std::time::Duration,
) -> io::Result<()> {
    match listener.0 {}
}

/// A wake-up channel for a queue's async waits: unsupported (no queue can exist here).
#[cfg(feature = "tokio")]
pub(crate) fn wakeup_pair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    unsupported("an async wake-up channel")
}

/// Signals a wake-up channel (none can exist here).
#[cfg(feature = "tokio")]
pub(crate) fn wakeup_signal(signal: &OwnedHandle, _watched: &OwnedHandle) {
    match signal.0 {}
}

/// Waits for signals of a wake-up channel: unsupported.
#[cfg(feature = "tokio")]
pub(crate) struct Watch<'a>(Never, std::marker::PhantomData<WaitHandle<'a>>);

#[cfg(feature = "tokio")]
impl<'a> Watch<'a> {
    /// Registers `watched`: unsupported.
    pub(crate) fn new(_watched: Option<WaitHandle<'a>>) -> io::Result<Watch<'a>> {
        unsupported("waiting on a queue asynchronously")
    }

    /// Waits for a signal.
    pub(crate) async fn changed(&mut self) -> io::Result<()> {
        match self.0 {}
    }
}
