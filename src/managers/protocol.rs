//! What a manager's clients and server say to each other: the kinds of object, the
//! operations on them, requests and replies, and the client's side of a connection.

use std::ops::Bound;

use super::*;

/// The kinds of object a manager holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[doc(hidden)]
pub enum Kind {
    /// A dict.
    Dict,
    /// A list.
    List,
    /// A single value.
    Value,
    /// A FIFO queue holding at most this many items (0: no limit).
    Queue(u32),
    /// A lock.
    Lock,
    /// A re-entrant lock.
    RLock,
    /// A semaphore: its initial value, and its bound for a bounded one.
    Semaphore(u32, Option<u32>),
    /// A barrier for this many parties.
    Barrier(u32),
    /// A condition variable with its own re-entrant lock.
    Condition,
    /// An event.
    Event,
}

/// One encoded value in a request or a reply: an operation's argument, a call's result. Kept
/// inline up to [`Blob::INLINE`] bytes, so that a call with small keys and values allocates
/// nothing on either side (a `Vec` each way was a tenth of a dict call's work: issue 19, W8).
/// No larger than a `Vec` (smallvec's `union` layout): requests and replies are moved several
/// times on their way, and a 32-byte inline room, which made them a quarter larger, cost what
/// the allocations saved. Encoded as [`Bytes`] is (a length and the bytes): either decodes
/// what the other wrote.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Blob(pub(super) smallvec::SmallVec<[u8; Blob::INLINE]>);

impl Blob {
    /// Values up to this many bytes are held inline.
    pub(super) const INLINE: usize = 16;

    /// The bytes, as a vector (a copy only if they were inline).
    pub(super) fn into_vec(self) -> Vec<u8> {
        self.0.into_vec()
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Blob {
        Blob(smallvec::SmallVec::from_vec(v))
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Blob {
        Blob(smallvec::SmallVec::from_slice(v))
    }
}

impl From<Blob> for Bytes {
    fn from(b: Blob) -> Bytes {
        Bytes(b.into_vec())
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({:?})", &self.0[..])
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Blob, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Blob, E> {
                Ok(Blob::from(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Blob, E> {
                Ok(Blob::from(v))
            }
        }
        deserializer.deserialize_bytes(Visit)
    }
}

/// One operation on an object (arguments encoded).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Op {
    Get(Blob),
    GetItem(Blob),
    SetItem(Blob, Blob),
    DelItem(Blob),
    Contains(Blob),
    Len,
    Keys,
    Items,
    Clear,
    Append(Blob),
    Index(i64),
    SetIndex(i64, Blob),
    Pop(Option<i64>),
    Load,
    Store(Blob),
    /// Waits up to this many seconds for room (`None`: as long as it takes).
    QueuePut(Blob, Option<f64>),
    /// Waits up to this many seconds for an item (`None`: as long as it takes).
    QueueGet(Option<f64>),
    /// Waits up to this many seconds for the lock (`None`: as long as it takes).
    Acquire(Option<f64>),
    Release,
    /// Whether a lock is held, or an event set.
    Locked,
    Set,
    /// Waits up to this many seconds for the event (`None`: as long as it takes).
    Wait(Option<f64>),
    TaskDone,
    /// Waits up to this many seconds until every item put is marked done.
    Join(Option<f64>),
    /// Waits up to this many seconds for the barrier's other parties.
    BarrierWait(Option<f64>),
    Abort,
    Reset,
    /// Wakes this many waiters of a condition (`None`: all).
    Notify(Option<u32>),
    /// A call on an object of the program's own type.
    Custom(Blob),
    /// A copy of an object of the program's own type.
    GetValue,
    /// A job for a pool, encoded by the client: run, waiting for it.
    PoolRun(crate::pool::RemoteJob),
    /// The same, started: the reply is the id of its result.
    PoolStart(crate::pool::RemoteJob),
    /// A started job's outcomes, waiting up to this many seconds (`None`: as long as it takes).
    ResultGet(Option<f64>),
    /// Whether a started job has finished, after waiting up to this many seconds.
    ResultWait(Option<f64>),
    /// One task's outcome of a started job (a map's chunk), waiting up to this many seconds.
    ResultChunk(u64, Option<f64>),
    /// `close()`, `terminate()` and `join()` of a pool (the join waiting up to this many
    /// seconds: answered with whether the workers ended).
    PoolClose,
    PoolTerminate,
    PoolJoin(Option<f64>),
    /// A dict's values, in insertion order.
    Values,
    /// Sets each key to its value, in order.
    Update(Vec<(Blob, Blob)>),
    /// Removes a key, giving its value (`Maybe`: none if absent).
    PopKey(Blob),
    /// Removes and gives the last entry inserted.
    PopItem,
    /// The value of a key, inserting the second value first if absent.
    SetDefault(Blob, Blob),
    /// Appends each item, in order.
    Extend(Vec<Blob>),
    /// Inserts an item before an index (clamped, as Python's `insert`).
    Insert(i64, Blob),
    /// Removes the first item encoded as this.
    Remove(Blob),
    Reverse,
    /// The position of the first item encoded as this, within the slice.
    Find(Blob, Bound<i64>, Bound<i64>),
    /// How many items are encoded as this.
    CountOf(Blob),
    /// The items of a slice (Python's `l[a:b]`).
    Slice(Bound<i64>, Bound<i64>),
    /// Replaces a slice with these items (Python's `l[a:b] = items`).
    SetSlice(Bound<i64>, Bound<i64>, Vec<Blob>),
    /// Removes a slice (Python's `del l[a:b]`).
    DelSlice(Bound<i64>, Bound<i64>),
    /// Repeats the items in place this many times (Python's `l *= n`).
    Repeat(u32),
    /// Holds a list for this client (others' calls on it wait) and gives its items: the first
    /// step of a sort done by the client.
    Hold,
    /// Puts a held list's items in this order (new position → old position) and lets go of it.
    Permute(Vec<u32>),
    /// Lets go of a held list unchanged.
    Unhold,
    /// Whether a queue holds its maximum number of items.
    Full,
    /// A queue's maximum number of items (0: no limit).
    MaxSize,
    /// A barrier's number of parties.
    Parties,
    /// The next task of a started job to finish and not yet taken (its outcome), waiting up
    /// to this many seconds; `Done` when every one was taken.
    ResultNext(Option<f64>),
}

/// How long an operation asks the manager to wait before it answers.
pub(super) enum Asks {
    /// It answers at once (or runs the program's own code, which is taken to).
    Answer,
    /// It waits up to this many seconds (a queue's room or item, a lock, an event...).
    WaitUpTo(f64),
    /// It waits as long as it takes (`get()`, `acquire()`, a pool's job run to its end...).
    WaitForEver,
}

impl Op {
    /// What the operation asks the manager to wait for (see [`Manager::set_timeout`](super::Manager::set_timeout)).
    pub(super) fn asks(&self) -> Asks {
        let limit = match self {
            Op::QueuePut(_, t)
            | Op::QueueGet(t)
            | Op::Acquire(t)
            | Op::Wait(t)
            | Op::Join(t)
            | Op::BarrierWait(t)
            | Op::ResultGet(t)
            | Op::ResultWait(t)
            | Op::ResultChunk(_, t)
            | Op::PoolJoin(t) => *t,
            Op::PoolRun(_) => None,
            _ => return Asks::Answer,
        };
        match limit {
            Some(t) => Asks::WaitUpTo(t),
            None => Asks::WaitForEver,
        }
    }
}

impl Op {
    /// The operation's name, for errors.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Op::Get(_) => "get",
            Op::GetItem(_) => "__getitem__",
            Op::SetItem(..) => "__setitem__",
            Op::DelItem(_) => "__delitem__",
            Op::Contains(_) => "__contains__",
            Op::Len => "__len__",
            Op::Keys => "keys",
            Op::Items => "items",
            Op::Clear => "clear",
            Op::Append(_) => "append",
            Op::Index(_) => "__getitem__",
            Op::SetIndex(..) => "__setitem__",
            Op::Pop(_) => "pop",
            Op::Load => "get",
            Op::Store(_) => "set",
            Op::QueuePut(..) => "put",
            Op::QueueGet(_) => "get",
            Op::Acquire(_) => "acquire",
            Op::Release => "release",
            Op::Locked => "locked",
            Op::Set => "set",
            Op::Wait(_) => "wait",
            Op::TaskDone => "task_done",
            Op::Join(_) => "join",
            Op::BarrierWait(_) => "wait",
            Op::Abort => "abort",
            Op::Reset => "reset",
            Op::Notify(_) => "notify",
            Op::Custom(_) => "handle",
            Op::GetValue => "_getvalue",
            Op::PoolRun(_) => "map",
            Op::PoolStart(_) => "map_async",
            Op::ResultGet(_) => "get",
            Op::ResultWait(_) => "wait",
            Op::ResultChunk(..) => "next",
            Op::PoolClose => "close",
            Op::PoolTerminate => "terminate",
            Op::PoolJoin(_) => "join",
            Op::Values => "values",
            Op::Update(_) => "update",
            Op::PopKey(_) => "pop",
            Op::PopItem => "popitem",
            Op::SetDefault(..) => "setdefault",
            Op::Extend(_) => "extend",
            Op::Insert(..) => "insert",
            Op::Remove(_) => "remove",
            Op::Reverse => "reverse",
            Op::Find(..) => "index",
            Op::CountOf(_) => "count",
            Op::Slice(..) => "__getitem__",
            Op::SetSlice(..) => "__setitem__",
            Op::DelSlice(..) => "__delitem__",
            Op::Repeat(_) => "__imul__",
            Op::Hold | Op::Permute(_) | Op::Unhold => "sort",
            Op::Full => "full",
            Op::MaxSize => "maxsize",
            Op::Parties => "parties",
            Op::ResultNext(_) => "next",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    Create(Kind, Option<Bytes>),
    /// An object of the program's own type: its entry point, and its initial value.
    CreateCustom(Code, Bytes),
    /// One more reference to an object, taking over the lease with this token if it is out
    /// (0: none).
    IncRef(u64, u64),
    /// One more reference to each object (held for a forked child).
    AddRefs(Vec<u64>),
    /// A reference for a proxy on its way to another process: the lease's token.
    Lease(u64),
    /// Keeps an object until shutdown (its proxy is stored inside another managed object).
    Pin(u64),
    /// One reference fewer to each object.
    DecRef(Vec<u64>),
    /// How many objects the manager holds.
    Count,
    /// A pool of this many worker processes (`None`: one per CPU of the manager's machine).
    CreatePool(Option<u32>),
    Named(String, Kind),
    Call(u64, Op),
    Shutdown,
    /// The first request on a connection: the token of the client's process (one per process,
    /// shared by its connections), so that [`Request::Leaving`] covers all of them.
    Hello(u64),
    /// The client's process exits normally (its exit hooks run): the locks its connections
    /// hold stay held when they close, as Python's do; a process that dies without saying so
    /// has its locks released.
    Leaving,
    /// This connection is closed in order (its client's last proxy in this process went): the
    /// locks it holds stay held. No reply.
    Closing,
    /// From now on this connection's messages go through these rings (a client on this
    /// machine: see `rings.rs`); the socket stays open as the liveness channel. Replied to on
    /// the socket.
    Rings(Rings),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    Done,
    Id(u64),
    Bytes(Blob),
    Maybe(Option<Blob>),
    Bool(bool),
    Len(u64),
    List(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    /// Python's exception name and message.
    Err(String, String),
    /// A pool job's outcomes.
    Outcomes(crate::pool::RemoteOutcomes),
}

/// The connections of one proxy copy (and its clones) to a manager: one per thread, opened on
/// the thread's first call, as Python's proxies keep one per (process, thread). So a call that
/// waits in the manager (a `get` on an empty queue) never holds up another thread's call on a
/// clone, and a lock belongs to the thread that took it. A forked child inherits its parent's
/// connections and must not use them (their replies are the parent's): it opens its own, with
/// rings of its own.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) address: Address,
    pub(super) authkey: Vec<u8>,
    /// Per process: a forked child starts with none, whoever held the lock at the fork.
    pub(super) conns: ForkLock<HashMap<(u32, ThreadId), Arc<Channel>>>,
    /// The manager refused rings once (another build): this client's calls stay on sockets.
    no_rings: AtomicBool,
    /// How long a call may go unanswered beyond the wait it asks for, in nanoseconds
    /// (`u64::MAX`: no limit): see [`Manager::set_timeout`](super::Manager::set_timeout).
    timeout: AtomicU64,
}

/// One thread's connection to the manager, and the rings its calls go through when the
/// manager runs on this machine (see `rings.rs`).
#[derive(Debug)]
pub(super) struct Channel {
    conn: Connection,
    rings: Option<Rings>,
}

impl Channel {
    /// Sends a request, by `deadline` if there is one.
    fn send(&self, request: &Request, deadline: Option<Instant>) -> Result<()> {
        match &self.rings {
            Some(rings) => rings.client(&self.conn).send(request, deadline),
            None => match deadline {
                None => self.conn.send(request),
                Some(d) => self
                    .conn
                    .send_timeout(request, d.saturating_duration_since(Instant::now())),
            },
        }
    }

    /// The reply, by `deadline` if there is one ([`Error::Timeout`] then).
    fn recv(&self, deadline: Option<Instant>) -> Result<Reply> {
        match &self.rings {
            Some(rings) => rings.client(&self.conn).recv(deadline),
            None => recv_by(&self.conn, deadline),
        }
    }
}

/// The last proxy of this client in this process went: its connections close in order, so
/// the locks they hold stay held, as Python's do (a connection that closes without a word is
/// a holder that died: its locks are released). No proxy of it is left, so no other thread
/// is using these connections.
impl Drop for Client {
    fn drop(&mut self) {
        let me = crate::sys::current_pid();
        let conns = std::mem::take(&mut *lock(self.conns.get()));
        for ((pid, _), c) in conns {
            if pid == me {
                let _ = c.send(&Request::Closing, None);
            }
        }
    }
}

impl Client {
    pub(super) fn new(address: Address, authkey: Vec<u8>) -> Arc<Client> {
        Arc::new(Client {
            address,
            authkey,
            // A forked child closes its copies of its parent's connections (when no thread
            // of the parent held the table at the fork).
            conns: ForkLock::per_process(HashMap::new, |parents| {
                parents.clear();
                HashMap::new()
            }),
            no_rings: AtomicBool::new(false),
            timeout: AtomicU64::new(u64::MAX),
        })
    }

    /// This thread's connection, opened if needed: authenticated, introduced, and given rings
    /// when the manager is on this machine.
    pub(super) fn connection(&self) -> Result<Arc<Channel>> {
        let this = (std::ptr::from_ref(self) as usize, crate::sys::current_pid());
        let last = LAST_CONNECTION.with_borrow(|last| match last {
            Some((client, pid, c)) if (*client, *pid) == this => c.upgrade(),
            _ => None,
        });
        if let Some(c) = last {
            return Ok(c);
        }
        let c = self.connection_in_table(None)?;
        LAST_CONNECTION.set(Some((this.0, this.1, Arc::downgrade(&c))));
        Ok(c)
    }

    /// [`connection`](Self::connection), from the table; one opened here is connected,
    /// authenticated and introduced by `deadline` (`None`: the connect as long as it takes,
    /// the handshake within [`HANDSHAKE_TIMEOUT`](crate::connection::HANDSHAKE_TIMEOUT)).
    pub(super) fn connection_in_table(&self, deadline: Option<Instant>) -> Result<Arc<Channel>> {
        let me = Self::me();
        {
            let conns = lock(self.conns.get());
            if let Some(c) = conns.get(&me) {
                return Ok(Arc::clone(c));
            }
        }
        let conn = match deadline {
            None => client(&self.address, Some(&self.authkey))?,
            Some(_) => client_until(&self.address, Some(&self.authkey), deadline)?,
        };
        conn.send(&Request::Hello(process_token()))?;
        match recv_by::<Reply>(&conn, deadline)? {
            Reply::Done => {}
            other => return Err(unexpected(other)),
        }
        let mut channel = Channel { conn, rings: None };
        if Rings::usable(&self.address) && !self.no_rings.load(Ordering::Relaxed) {
            // Without shared memory to spare, the calls stay on the socket.
            if let Ok(mut rings) = Rings::new() {
                let accepted = channel
                    .conn
                    .send(&Request::Rings(rings.clone()))
                    .and_then(|()| recv_by::<Reply>(&channel.conn, deadline));
                match accepted {
                    Ok(Reply::Done) => {
                        rings.close_handles();
                        channel.rings = Some(rings);
                    }
                    Ok(other) => return Err(unexpected(other)),
                    Err(Error::Timeout) => return Err(Error::Timeout),
                    // A manager of another build hangs up on a request it does not know.
                    Err(_) => {
                        self.no_rings.store(true, Ordering::Relaxed);
                        return self.connection_in_table(deadline);
                    }
                }
            }
        }
        let c = Arc::new(channel);
        lock(self.conns.get()).insert(me, Arc::clone(&c));
        Ok(c)
    }

    pub(super) fn me() -> (u32, ThreadId) {
        (crate::sys::current_pid(), std::thread::current().id())
    }

    /// Bounds every later call (see [`Manager::set_timeout`](super::Manager::set_timeout)).
    pub(super) fn set_timeout(&self, timeout: Option<Duration>) {
        let nanos = timeout.map_or(u64::MAX, |t| {
            t.as_nanos().min(u128::from(u64::MAX - 1)) as u64
        });
        self.set_timeout_nanos(nanos);
    }

    /// The call timeout in nanoseconds, `u64::MAX` for none (as a proxy carries it).
    pub(super) fn timeout_nanos(&self) -> u64 {
        self.timeout.load(Ordering::Relaxed)
    }

    pub(super) fn set_timeout_nanos(&self, nanos: u64) {
        self.timeout.store(nanos, Ordering::Relaxed);
    }

    /// The call timeout (`None`: none).
    pub(super) fn timeout(&self) -> Option<Duration> {
        match self.timeout_nanos() {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// When the reply to `request` is due: the call timeout after the wait it asks for
    /// (`None`: no call timeout, or a wait as long as it takes).
    fn deadline(&self, request: &Request) -> Option<Instant> {
        let timeout = self.timeout()?;
        let asked = match request {
            Request::Call(_, op) => match op.asks() {
                Asks::Answer => Duration::ZERO,
                Asks::WaitUpTo(secs) => Duration::try_from_secs_f64(secs).ok()?,
                Asks::WaitForEver => return None,
            },
            _ => Duration::ZERO,
        };
        crate::sys::deadline_after(timeout.checked_add(asked)?)
    }

    pub(super) fn call(&self, request: &Request) -> Result<Reply> {
        self.call_until(request, self.deadline(request))
    }

    /// [`call`](Self::call), the reply due by `deadline` (`None`: as long as it takes).
    pub(super) fn call_until(&self, request: &Request, deadline: Option<Instant>) -> Result<Reply> {
        let c = match deadline {
            None => self.connection()?,
            Some(_) => self.connection_in_table(deadline)?,
        };
        let reply = c.send(request, deadline).and_then(|()| c.recv(deadline));
        if reply.is_err() {
            // The stream may be off a message boundary now: never reuse it.
            lock(self.conns.get()).remove(&Self::me());
        }
        match reply? {
            Reply::Err(kind, message) => Err(Error::Remote { kind, message }),
            other => Ok(other),
        }
    }
}

thread_local! {
    /// This thread's last connection, its client's address and its process's pid beside it:
    /// a call finds it without the table's lock and hash (issue 19, W8). The table owns it (a
    /// client dropped, or a connection dropped after a failed call, is not found here); a
    /// forked child, another pid, looks in its own table.
    static LAST_CONNECTION: std::cell::RefCell<Option<(usize, u32, std::sync::Weak<Channel>)>> =
        const { std::cell::RefCell::new(None) };
}

/// This process's token for [`Request::Hello`]: random per process tree, mixed with the pid so
/// that a forked child (which opens connections of its own) has its own.
fn process_token() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness: the time, which differs between the processes that matter.
        if getrandom::fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = now.to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    base ^ u64::from(crate::sys::current_pid()).rotate_left(32)
}

/// How long a side of a manager call looks for the other's next message before sleeping: a
/// sleeping process woken from another CPU costs tens of µs on a VM, a call answered by an awake
/// manager a few.
pub(super) const SPIN: Duration = Duration::from_micros(50);

/// Receives the next message, first looking for it (yielding the CPU between looks, in case
/// the other side runs on this one) for up to [`SPIN`], then sleeping.
pub(super) fn recv_soon<T: DeserializeOwned + 'static>(conn: &Connection) -> Result<T> {
    let start = std::time::Instant::now();
    while !conn.poll(Some(Duration::ZERO))? && start.elapsed() < SPIN {
        std::thread::yield_now();
    }
    conn.recv()
}

/// [`recv_soon`], or by `deadline` if there is one ([`Error::Timeout`] then).
fn recv_by<T: DeserializeOwned + 'static>(
    conn: &Connection,
    deadline: Option<Instant>,
) -> Result<T> {
    match deadline {
        None => recv_soon(conn),
        Some(d) => conn.recv_timeout(d.saturating_duration_since(Instant::now())),
    }
}

pub(super) fn unexpected(reply: Reply) -> Error {
    Error::Codec(format!("unexpected reply from the manager: {reply:?}"))
}
