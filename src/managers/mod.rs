//! Python's `multiprocessing.managers`: a [`Manager`] process holds shared objects (dicts,
//! lists, values, queues), and proxies in any process operate on them by messages.
//!
//! ```
//! # fn main() -> multiprocess::Result<()> {
//! # multiprocess::init_test();
//! let manager = multiprocess::Manager::start()?;
//! let scores = manager.dict::<String, u32>()?;
//! scores.set(&"ada".to_string(), &36)?;
//! assert_eq!(scores.get(&"ada".to_string())?, Some(36));
//! let log = manager.list::<String>()?;
//! log.append(&"started".to_string())?;
//! assert_eq!(log.len()?, 1);
//! # Ok(()) }
//! ```
//!
//! A proxy is typed on the client side only: the manager keeps the encoded bytes, so any serde
//! type works and nothing is registered. Proxies travel to other processes (as Process
//! arguments, over a `Connection`, inside a queue, or as values inside another managed object,
//! which gives Python's nested proxies); each copy opens its own connection to the manager the
//! first time it is used, authenticated with the process's `authkey` (inherited from the
//! parent, as in Python). A failed call comes back as [`Error::Remote`] with Python's exception
//! name (`KeyError`, `IndexError`...). When the manager is gone, every call fails at once with
//! an I/O error instead of hanging.
//!
//! Managers on another host or started by another program: [`Manager::start_at`] listens on
//! an address of your choice with a key of your choice, and [`Manager::connect`] reaches it;
//! objects shared by name ([`Manager::named`]) are how such clients find each other's queues
//! (Python's `register('get_queue', ...)`).
//!
//! Objects of the program's own types live in a manager too ([`Managed`], [`Manager::create`]):
//! Python's `register`. A manager also runs pools ([`Manager::pool`]) that every holder of the
//! proxy submits work to.
//!
//! Objects are reference-counted as in Python: each process holding proxies of an object holds
//! one reference (its clones share it), given back when its last proxy is dropped or when the
//! process exits; the object goes when no process refers to it
//! ([`Manager::number_of_objects`]). A proxy sent to another process carries a lease, so the
//! sender may drop its own at once (Python's Process keeps its arguments alive for this; a
//! proxy sent over a connection has no such guard in Python); a forked child's copies get
//! references of their own. Beyond Python's, two rules keep an object rather than risk a
//! proxy naming a released one: a proxy stored inside another managed object pins its object
//! until shutdown (the manager keeps encoded bytes and cannot see that copy go), and so does a
//! proxy that was encoded and never decoded (a `Process` never started). A process killed
//! outright gives nothing back (as in Python).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Address, Connection, client};
use crate::error::{Error, Result};
use crate::process::{Process, current_process, lock};
use crate::registry::{Code, Target};
use crate::sys::fork_lock::ForkLock;
use crate::wire::{self, Bytes};

mod custom;
mod server;

pub use custom::{Managed, Proxy};

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
    /// A FIFO queue.
    Queue,
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

/// One operation on an object (arguments encoded).
#[derive(Debug, Serialize, Deserialize)]
enum Op {
    Get(Bytes),
    GetItem(Bytes),
    SetItem(Bytes, Bytes),
    DelItem(Bytes),
    Contains(Bytes),
    Len,
    Keys,
    Items,
    Clear,
    Append(Bytes),
    Index(i64),
    SetIndex(i64, Bytes),
    Pop(Option<i64>),
    Load,
    Store(Bytes),
    QueuePut(Bytes),
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
    Custom(Bytes),
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
    /// `close()`, `terminate()` and `join()` of a pool.
    PoolClose,
    PoolTerminate,
    PoolJoin,
}

impl Op {
    /// The operation's name, for errors.
    fn name(&self) -> &'static str {
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
            Op::QueuePut(_) => "put",
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
            Op::PoolJoin => "join",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
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
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Done,
    Id(u64),
    Bytes(Bytes),
    Maybe(Option<Bytes>),
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
/// connections and must not use them (their replies are the parent's): it opens its own.
#[derive(Debug)]
struct Client {
    address: Address,
    authkey: Vec<u8>,
    /// Per process: a forked child starts with none, whoever held the lock at the fork.
    conns: ForkLock<HashMap<(u32, ThreadId), Arc<Connection>>>,
}

impl Client {
    fn new(address: Address, authkey: Vec<u8>) -> Arc<Client> {
        Arc::new(Client {
            address,
            authkey,
            // A forked child closes its copies of its parent's connections (when no thread
            // of the parent held the table at the fork).
            conns: ForkLock::per_process(HashMap::new, HashMap::clear),
        })
    }

    /// This thread's connection, opened if needed.
    fn connection(&self) -> Result<Arc<Connection>> {
        let me = Self::me();
        {
            let conns = lock(self.conns.get());
            if let Some(c) = conns.get(&me) {
                return Ok(Arc::clone(c));
            }
        }
        let c = Arc::new(client(&self.address, Some(&self.authkey))?);
        lock(self.conns.get()).insert(me, Arc::clone(&c));
        Ok(c)
    }

    fn me() -> (u32, ThreadId) {
        (crate::sys::current_pid(), std::thread::current().id())
    }

    fn call(&self, request: &Request) -> Result<Reply> {
        let c = self.connection()?;
        let reply = c.send(request).and_then(|()| recv_soon::<Reply>(&c));
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

/// How long a side of a manager call looks for the other's next message before sleeping: a
/// sleeping process woken from another CPU costs tens of µs on a VM, a call answered by an awake
/// manager a few.
const SPIN: Duration = Duration::from_micros(50);

/// Receives the next message, first looking for it (yielding the CPU between looks, in case
/// the other side runs on this one) for up to [`SPIN`], then sleeping.
fn recv_soon<T: DeserializeOwned>(conn: &Connection) -> Result<T> {
    let start = std::time::Instant::now();
    while !conn.poll(Some(Duration::ZERO))? && start.elapsed() < SPIN {
        std::thread::yield_now();
    }
    conn.recv()
}

fn unexpected(reply: Reply) -> Error {
    Error::Codec(format!("unexpected reply from the manager: {reply:?}"))
}

/// One process's reference to an object in a manager, shared by every clone of the proxies
/// made from it in this process. The manager counts references (Python's `incref`/`decref`):
/// this one is given back when its last clone is dropped, or when the process exits
/// ([`release_all`]), and the object goes when no process refers to it.
#[derive(Debug)]
pub(crate) struct Ref {
    client: Arc<Client>,
    id: u64,
    /// The process that holds the reference (a forked child adopts its copies).
    holder: AtomicU32,
    /// Given back already.
    released: AtomicBool,
}

impl Drop for Ref {
    fn drop(&mut self) {
        if self.holder.load(Ordering::Relaxed) == crate::sys::current_pid()
            && !self.released.swap(true, Ordering::Relaxed)
        {
            // A manager that is gone has nothing to give back to.
            let _ = self.client.call(&Request::DecRef(vec![self.id]));
        }
    }
}

/// Every reference this process made, to give them back at exit and to hold them for a forked
/// child (pruned of dropped ones as it grows).
/// (A [`ForkLock`]: a forked child starts it afresh with the references it adopts, whoever
/// held it at the fork.)
static LIVE: ForkLock<Vec<Weak<Ref>>> = ForkLock::new(Vec::new);

/// The reference every proxy holds: which manager, which object.
#[derive(Debug, Clone)]
struct Handle(Arc<Ref>);

impl std::ops::Deref for Handle {
    type Target = Ref;
    fn deref(&self) -> &Ref {
        &self.0
    }
}

impl Handle {
    /// A proxy's handle for a reference to `id` this process now holds.
    fn new(client: Arc<Client>, id: u64) -> Handle {
        // Our references go back at exit (Python's proxy finalizers).
        // A forked child's copies of our proxies need references of their own.
        static HOOKS: std::sync::Once = std::sync::Once::new();
        HOOKS.call_once(|| {
            crate::process::on_exit(release_all);
            crate::process::start::on_fork(&FORK_HOOK);
        });
        let r = Arc::new(Ref {
            client,
            id,
            holder: AtomicU32::new(crate::sys::current_pid()),
            released: AtomicBool::new(false),
        });
        let mut live = lock(LIVE.get());
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|w| w.strong_count() > 0);
        }
        live.push(Arc::downgrade(&r));
        Handle(r)
    }
}

/// This process's live references, with the ids of each manager's together.
fn held_here() -> Vec<(Arc<Client>, Vec<Arc<Ref>>)> {
    let me = crate::sys::current_pid();
    let live: Vec<Arc<Ref>> = lock(LIVE.get()).iter().filter_map(Weak::upgrade).collect();
    by_manager(
        live.into_iter().filter(|r| {
            r.holder.load(Ordering::Relaxed) == me && !r.released.load(Ordering::Relaxed)
        }),
    )
}

/// `refs` grouped by the manager they refer to (one request per manager).
fn by_manager(refs: impl Iterator<Item = Arc<Ref>>) -> Vec<(Arc<Client>, Vec<Arc<Ref>>)> {
    let mut groups: Vec<(Arc<Client>, Vec<Arc<Ref>>)> = Vec::new();
    for r in refs {
        match groups.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &r.client)) {
            Some((_, refs)) => refs.push(r),
            None => groups.push((Arc::clone(&r.client), vec![r])),
        }
    }
    groups
}

/// At exit (Python's finalizers): gives back every reference this process holds.
fn release_all() {
    for (client, refs) in held_here() {
        let ids: Vec<u64> = refs
            .iter()
            .filter(|r| !r.released.swap(true, Ordering::Relaxed))
            .map(|r| r.id)
            .collect();
        if !ids.is_empty() {
            let _ = client.call(&Request::DecRef(ids));
        }
    }
}

/// Around a fork: the child's references (see [`hold_for_child`], [`adopt`], [`give_back`]).
static FORK_HOOK: crate::process::start::ForkHook = crate::process::start::ForkHook {
    before: || Box::new(hold_for_child()),
    in_child: |held| {
        if let Ok(held) = held.downcast::<Vec<Arc<Ref>>>() {
            adopt(&held);
        }
    },
    in_parent: |held, forked| {
        if let (false, Ok(held)) = (forked, held.downcast::<Vec<Arc<Ref>>>()) {
            give_back(*held);
        }
    },
};

/// Before a fork: takes one more reference to every object this process refers to, for the
/// child, which [`adopt`]s its copies (Python increfs after a fork). Returns them, for
/// [`adopt`] in the child, or [`give_back`] if the fork failed.
fn hold_for_child() -> Vec<Arc<Ref>> {
    let mut held = Vec::new();
    for (client, refs) in held_here() {
        let ids = refs.iter().map(|r| r.id).collect();
        // A manager that is gone: the child's proxies will fail as ours do.
        if client.call(&Request::AddRefs(ids)).is_ok() {
            held.extend(refs);
        }
    }
    held
}

/// In a forked child: the references held for it are its own.
fn adopt(held: &[Arc<Ref>]) {
    let me = crate::sys::current_pid();
    for r in held {
        r.holder.store(me, Ordering::Relaxed);
    }
    LIVE.reset(held.iter().map(Arc::downgrade).collect());
}

/// After a failed fork: gives back what [`hold_for_child`] took.
fn give_back(held: Vec<Arc<Ref>>) {
    for (client, refs) in by_manager(held.into_iter()) {
        let _ = client.call(&Request::DecRef(refs.iter().map(|r| r.id).collect()));
    }
}

impl Handle {
    fn call(&self, op: Op) -> Result<Reply> {
        self.client.call(&Request::Call(self.id, op))
    }

    fn done(&self, op: Op) -> Result<()> {
        match self.call(op)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn flag(&self, op: Op) -> Result<bool> {
        match self.call(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// A lock's or semaphore's acquire: with `block`, waits up to `timeout`; without, once.
    fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let wait = if block { secs(timeout) } else { Some(0.0) };
        self.flag(Op::Acquire(wait))
    }

    fn len(&self) -> Result<usize> {
        match self.call(Op::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    fn value<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        match self.call(op)? {
            Reply::Bytes(b) => wire::decode(&b.0),
            other => Err(unexpected(other)),
        }
    }

    fn list<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
        match self.call(op)? {
            Reply::List(items) => items.iter().map(|b| wire::decode(&b.0)).collect(),
            other => Err(unexpected(other)),
        }
    }
}

thread_local! {
    /// Set while a value is encoded to be stored in a manager (an argument of a proxy call).
    static INTO_MANAGER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A proxy travels as its manager's address, its object's id and a lease: a reference the
/// manager keeps for the receiver, which takes it over when it decodes the proxy, so that the
/// sender may drop its own at once (a proxy never decoded keeps its object until shutdown).
/// A proxy stored inside another managed object pins its object instead (the manager never
/// reads the bytes it stores, so it cannot know when that copy goes). The receiving copy
/// connects with its own process's `authkey`.
impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let token = if INTO_MANAGER.with(std::cell::Cell::get) {
            match self.client.call(&Request::Pin(self.id)) {
                Ok(Reply::Done) => 0,
                Ok(other) => return Err(S::Error::custom(unexpected(other))),
                Err(e) => return Err(S::Error::custom(e)),
            }
        } else {
            match self.client.call(&Request::Lease(self.id)) {
                Ok(Reply::Id(token)) => token,
                Ok(other) => return Err(S::Error::custom(unexpected(other))),
                Err(e) => return Err(S::Error::custom(e)),
            }
        };
        (&self.client.address, self.id, token).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (address, id, token) = <(Address, u64, u64)>::deserialize(d)?;
        let client = Client::new(address, current_process().authkey().to_vec());
        match client.call(&Request::IncRef(id, token)) {
            Ok(Reply::Done) => Ok(Handle::new(client, id)),
            Ok(other) => Err(D::Error::custom(unexpected(other))),
            Err(e) => Err(D::Error::custom(e)),
        }
    }
}

/// Encodes an argument of a proxy call (stored in the manager, or compared with what it
/// stores).
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    let was = INTO_MANAGER.with(|f| f.replace(true));
    let encoded = wire::encode(value);
    INTO_MANAGER.with(|f| f.set(was));
    encoded.map(Bytes)
}

// ---------------------------------------------------------------------------------------------

/// A manager: a server process holding shared objects (Python's `multiprocessing.Manager()`,
/// a `SyncManager`), or a connection to one started elsewhere ([`Manager::connect`]).
///
/// Dropping the `Manager` that started the server shuts it down (Python's `shutdown()`);
/// proxies then fail with an I/O error.
#[derive(Debug)]
pub struct Manager {
    client: Arc<Client>,
    process: Option<Process>,
}

impl Manager {
    /// Starts a manager process listening on a fresh local address (a Unix socket; a named
    /// pipe on Windows) with this process's `authkey`, by the default start method. The
    /// process is daemonic: it ends with this one at the latest.
    ///
    /// # Errors
    /// As [`Process::start`], or the server's own error if it could not listen.
    pub fn start() -> Result<Manager> {
        Manager::start_at(None, &current_process().authkey())
    }

    /// Starts a manager process listening on `address` (`None`: a fresh local one) and
    /// accepting clients that know `authkey` (Python's `BaseManager(address, authkey)` +
    /// `start()`): e.g. `Address::Tcp("0.0.0.0:50000".parse()?)` for other hosts.
    ///
    /// # Errors
    /// As [`Manager::start`].
    pub fn start_at(address: Option<Address>, authkey: &[u8]) -> Result<Manager> {
        let (ours, theirs) = crate::pipe(true)?;
        let mut process = Process::new(server::serve, (theirs, address, authkey.to_vec()))
            .name("Manager")
            .daemon(true);
        process.start()?;
        let address = match ours.recv::<std::result::Result<Address, String>>() {
            Ok(Ok(address)) => address,
            Ok(Err(e)) => return Err(Error::state(format!("the manager could not start: {e}"))),
            Err(e) => {
                let _ = process.kill();
                let _ = process.join(None);
                return Err(e);
            }
        };
        Ok(Manager {
            client: Client::new(address, authkey.to_vec()),
            process: Some(process),
        })
    }

    /// A manager server run by this process itself (Python's `BaseManager(address,
    /// authkey).get_server()`): bind it here, tell clients its [`address`](ManagerServer::address),
    /// then [`serve_forever`](ManagerServer::serve_forever). Clients reach it with
    /// [`Manager::connect`].
    ///
    /// # Errors
    /// As [`Listener::bind`](crate::connection::Listener::bind) (the address is in use, or
    /// not one this OS has).
    pub fn server(address: Option<Address>, authkey: &[u8]) -> Result<ManagerServer> {
        Ok(ManagerServer {
            listener: crate::connection::Listener::bind(address, Some(authkey))?,
        })
    }

    /// Connects to a manager started elsewhere (Python's `BaseManager(address, authkey)` +
    /// `connect()`), checking the key at once.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a wrong key; [`Error::Io`] if nothing listens there.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        let client = Client::new(address.clone(), authkey.to_vec());
        client.connection()?;
        Ok(Manager {
            client,
            process: None,
        })
    }

    /// Where the manager listens.
    pub fn address(&self) -> &Address {
        &self.client.address
    }

    /// How many objects the manager holds now (Python's `_number_of_objects()`, a debugging
    /// aid): objects go when no process refers to them any more.
    pub fn number_of_objects(&self) -> Result<usize> {
        match self.client.call(&Request::Count)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// The manager's process, if this `Manager` started it.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    fn make(&self, kind: Kind, initial: Option<Bytes>) -> Result<Handle> {
        match self.client.call(&Request::Create(kind, initial))? {
            Reply::Id(id) => Ok(Handle::new(Arc::clone(&self.client), id)),
            other => Err(unexpected(other)),
        }
    }

    /// A new shared dict (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy(self.make(Kind::Dict, None)?, PhantomData))
    }

    /// A new shared list (Python's `manager.list()`).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy(self.make(Kind::List, None)?, PhantomData))
    }

    /// A new shared value holding `initial` (Python's `manager.Value(typecode, value)`; the
    /// type is `T`).
    pub fn value<T: Serialize>(&self, initial: &T) -> Result<ValueProxy<T>> {
        let handle = self.make(Kind::Value, Some(encode(initial)?))?;
        Ok(ValueProxy(handle, PhantomData))
    }

    /// A new shared FIFO queue (Python's `manager.Queue()`).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        Ok(QueueProxy(self.make(Kind::Queue, None)?, PhantomData))
    }

    /// A new lock (Python's `manager.Lock()`, a proxy of `threading.Lock`).
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy(self.make(Kind::Lock, None)?))
    }

    /// A new re-entrant lock (Python's `manager.RLock()`). It belongs to the thread that
    /// acquired it through this proxy (or a clone), as Python's belongs to a thread.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy(self.make(Kind::RLock, None)?))
    }

    /// A new semaphore starting at `value` (Python's `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy(
            self.make(Kind::Semaphore(value, None), None)?,
        ))
    }

    /// A new bounded semaphore (Python's `manager.BoundedSemaphore(value)`): releasing it
    /// above `value` is an error.
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let kind = Kind::Semaphore(value, Some(value));
        Ok(SemaphoreProxy(self.make(kind, None)?))
    }

    /// A new namespace (Python's `manager.Namespace()`): attributes by name, each of any
    /// serde type.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy(self.make(Kind::Dict, None)?))
    }

    /// A new barrier for `parties` processes (Python's `manager.Barrier(parties, timeout)`;
    /// the timeout is given to each [`wait`](BarrierProxy::wait)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero parties.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        Ok(BarrierProxy(self.make(Kind::Barrier(parties), None)?))
    }

    /// A new condition variable with its own re-entrant lock (Python's `manager.Condition()`).
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy(self.make(Kind::Condition, None)?))
    }

    /// A new event (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy(self.make(Kind::Event, None)?))
    }

    /// A new pool of `processes` worker processes (one per CPU of the manager's machine for
    /// `None`) run by the manager (Python's `manager.Pool(processes)`): any process holding
    /// the proxy submits work to it. The workers run this program, as the manager does.
    ///
    /// # Errors
    /// [`Error::Remote`] if the manager could not start the workers.
    pub fn pool(&self, processes: Option<usize>) -> Result<PoolProxy> {
        let request = Request::CreatePool(processes.map(|n| n.min(u32::MAX as usize) as u32));
        let handle = match self.client.call(&request)? {
            Reply::Id(id) => Handle::new(Arc::clone(&self.client), id),
            other => return Err(unexpected(other)),
        };
        let size = handle.len()?;
        Ok(PoolProxy(handle, size))
    }

    /// A new fixed-length array holding `items` (Python's `manager.Array(typecode, items)`;
    /// the item type is `T`).
    pub fn array<T: Serialize>(&self, items: &[T]) -> Result<ArrayProxy<T>> {
        let items = items.iter().map(encode).collect::<Result<Vec<_>>>()?;
        let handle = self.make(Kind::List, Some(encode(&items)?))?;
        Ok(ArrayProxy(handle, PhantomData))
    }

    /// A new object of the program's own type, starting as `initial` (Python's
    /// `manager.Counter(...)` after `register('Counter', Counter)`): see [`Managed`].
    ///
    /// # Errors
    /// [`Error::Remote`] `TypeError` if the manager runs another build of the program (one
    /// reached with [`connect`](Manager::connect)); [`Error::InvalidArgument`] if `T`'s code
    /// is outside the main executable.
    pub fn create<T: Managed>(&self, initial: &T) -> Result<Proxy<T>> {
        let request = Request::CreateCustom(custom::entry_of::<T>()?, encode(initial)?);
        match self.client.call(&request)? {
            Reply::Id(id) => Ok(Proxy(
                Handle::new(Arc::clone(&self.client), id),
                PhantomData,
            )),
            other => Err(unexpected(other)),
        }
    }

    /// The dict, list or queue shared under `name`, made empty the first time it is asked
    /// for: how clients of a manager find the same object (Python registers a function such
    /// as `get_queue` for this).
    ///
    /// ```
    /// # fn main() -> multiprocess::Result<()> {
    /// # multiprocess::init_test();
    /// use multiprocess::managers::QueueProxy;
    /// let manager = multiprocess::Manager::start()?;
    /// let jobs: QueueProxy<u32> = manager.named("jobs")?;
    /// jobs.put(&7)?;
    /// let same: QueueProxy<u32> = manager.named("jobs")?;
    /// assert_eq!(same.get()?, 7);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Remote`] (`TypeError`) if `name` holds an object of another kind.
    pub fn named<P: Named>(&self, name: &str) -> Result<P> {
        match self
            .client
            .call(&Request::Named(name.to_string(), P::KIND))?
        {
            Reply::Id(id) => Ok(P::from_handle(HandleRef(Handle::new(
                Arc::clone(&self.client),
                id,
            )))),
            other => Err(unexpected(other)),
        }
    }

    /// Stops the manager process this `Manager` started (Python's `shutdown()`); its objects
    /// are gone. Does nothing for a [`connect`](Manager::connect)ed one, or a second time.
    ///
    /// # Errors
    /// As [`Process::join`].
    pub fn shutdown(&mut self) -> Result<()> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        let _ = self.client.call(&Request::Shutdown);
        process.join(Some(Duration::from_secs(1)))?;
        if process.is_alive()? {
            process.terminate()?;
            process.join(None)?;
        }
        Ok(())
    }
}

/// A manager server bound in this process ([`Manager::server`]; Python's `Server`).
#[derive(Debug)]
pub struct ManagerServer {
    listener: crate::connection::Listener,
}

impl ManagerServer {
    /// Where it listens (with the port the OS chose, for a TCP address with port 0).
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Serves clients, each on a thread of its own, for as long as this process runs (end the
    /// process to stop it, as Python's `serve_forever` runs until its process exits).
    ///
    /// # Errors
    /// Returns only if the listener fails.
    pub fn serve_forever(self) -> Result<std::convert::Infallible> {
        Err(server::serve_on(&Arc::new(self.listener)))
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A proxy type that [`Manager::named`] can make: [`DictProxy`], [`ListProxy`],
/// [`QueueProxy`].
pub trait Named: Sized {
    #[doc(hidden)]
    const KIND: Kind;
    #[doc(hidden)]
    fn from_handle(handle: HandleRef) -> Self;
}

/// The reference inside a proxy (opaque).
#[doc(hidden)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandleRef(Handle);

// ---------------------------------------------------------------------------------------------

macro_rules! proxy_impls {
    ($name:ident < $($t:ident),* >) => {
        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name(self.0.clone(), PhantomData)
            }
        }

        impl<$($t),*> std::fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("address", &self.0.client.address)
                    .field("id", &self.0.id)
                    .finish()
            }
        }

        /// Travels to other processes as a reference to the same object.
        impl<$($t),*> Serialize for $name<$($t),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de, $($t),*> Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok($name(Handle::deserialize(d)?, PhantomData))
            }
        }
    };
}

use proxy_impls;

/// A shared dict held by a [`Manager`] (Python's `DictProxy`). Keys are compared by their
/// encoding: two keys are the same key when they encode to the same bytes (true of strings,
/// integers and other plain data).
pub struct DictProxy<K, V>(Handle, PhantomData<fn() -> (K, V)>);
proxy_impls!(DictProxy<K, V>);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value for `key`, if any (Python's `d.get(key)`).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.0.call(Op::Get(encode(key)?))? {
            Reply::Maybe(b) => b.map(|b| wire::decode(&b.0)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The value for `key` (Python's `d[key]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none.
    pub fn get_item(&self, key: &K) -> Result<V> {
        self.0.value(Op::GetItem(encode(key)?))
    }

    /// Sets `key` to `value` (Python's `d[key] = value`).
    pub fn set(&self, key: &K, value: &V) -> Result<()> {
        self.0.done(Op::SetItem(encode(key)?, encode(value)?))
    }

    /// Removes `key` (Python's `del d[key]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `KeyError` if there is none.
    pub fn del(&self, key: &K) -> Result<()> {
        self.0.done(Op::DelItem(encode(key)?))
    }

    /// Whether `key` is present (Python's `key in d`).
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.0.flag(Op::Contains(encode(key)?))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.0.list(Op::Keys)
    }

    /// The entries, in insertion order (Python's `d.items()`, or `d.copy()`).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.0.call(Op::Items)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((wire::decode(&k.0)?, wire::decode(&v.0)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A shared list held by a [`Manager`] (Python's `ListProxy`). Indices follow Python: a
/// negative one counts from the end.
pub struct ListProxy<T>(Handle, PhantomData<fn() -> T>);
proxy_impls!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value`.
    pub fn append(&self, value: &T) -> Result<()> {
        self.0.done(Op::Append(encode(value)?))
    }

    /// The item at `index` (Python's `l[index]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.0.value(Op::Index(index))
    }

    /// Replaces the item at `index` (Python's `l[index] = value`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.0.done(Op::SetIndex(index, encode(value)?))
    }

    /// Removes and returns the item at `index`, the last one for `None` (Python's `pop`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range or empty.
    pub fn pop(&self, index: Option<i64>) -> Result<T> {
        self.0.value(Op::Pop(index))
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items (Python's `l[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }
}

/// A pool run by a [`Manager`] (Python's `manager.Pool()`): every process holding a copy of
/// the proxy submits work to the same workers. Targets and arguments follow
/// [`Pool`](crate::Pool)'s rules. No `imap_unordered` (Python's proxy has it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolProxy(Handle, usize);

impl PoolProxy {
    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.1
    }

    fn run(&self, job: crate::pool::RemoteJob) -> Result<crate::pool::RemoteOutcomes> {
        match self.0.call(Op::PoolRun(job))? {
            Reply::Outcomes(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// `f(args...)` in a worker, waiting for its value (Python's `apply`).
    ///
    /// # Errors
    /// As [`Pool::apply`](crate::Pool::apply); [`Error::Remote`] if the pool was closed.
    pub fn apply<F, A, R>(&self, _f: F, args: A) -> Result<R>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let job = crate::pool::RemoteJob::apply::<F, A, R>(&args)?;
        crate::pool::decode_remote_one(self.run(job)?)
    }

    /// `f(x)` for every item, in order (Python's `map`); `chunksize` as
    /// [`Pool::map`](crate::Pool::map)'s.
    ///
    /// # Errors
    /// As [`Pool::map`](crate::Pool::map).
    pub fn map<F, X, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<X> = items.into_iter().collect();
        let job = crate::pool::RemoteJob::map::<F, X, R>(items, chunksize, self.1)?;
        crate::pool::decode_remote_chunks(self.run(job)?)
    }

    /// `f(*a)` for every tuple, in order (Python's `starmap`).
    ///
    /// # Errors
    /// As [`Pool::starmap`](crate::Pool::starmap).
    pub fn starmap<F, A, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let job = crate::pool::RemoteJob::starmap::<F, A, R>(items, chunksize, self.1)?;
        crate::pool::decode_remote_chunks(self.run(job)?)
    }

    fn start<R>(
        &self,
        job: crate::pool::RemoteJob,
        decode: fn(crate::pool::RemoteOutcomes) -> Result<R>,
    ) -> Result<AsyncResultProxy<R>> {
        match self.0.call(Op::PoolStart(job))? {
            Reply::Id(id) => Ok(AsyncResultProxy {
                handle: Handle::new(Arc::clone(&self.0.client), id),
                decode,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Starts `f(args...)` in a worker (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Codec`] if the arguments cannot be encoded; [`Error::Remote`] if the pool was
    /// closed.
    pub fn apply_async<F, A, R>(&self, _f: F, args: A) -> Result<AsyncResultProxy<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let job = crate::pool::RemoteJob::apply::<F, A, R>(&args)?;
        self.start(job, crate::pool::decode_remote_one::<R>)
    }

    /// Starts a [`map`](PoolProxy::map) (Python's `map_async`).
    ///
    /// # Errors
    /// As [`apply_async`](PoolProxy::apply_async).
    pub fn map_async<F, X, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResultProxy<Vec<R>>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<X> = items.into_iter().collect();
        let job = crate::pool::RemoteJob::map::<F, X, R>(items, chunksize, self.1)?;
        self.start(job, crate::pool::decode_remote_chunks::<R>)
    }

    /// `f(x)` for every item, in order, as the results come (Python's `imap`): each step gives
    /// the next item's result, waiting for its chunk (`chunksize` as Python's `imap`: 1 when
    /// `None`).
    ///
    /// # Errors
    /// As [`apply_async`](PoolProxy::apply_async); each step's result as
    /// [`Pool::imap`](crate::Pool::imap)'s.
    pub fn imap<F, X, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<RemoteIMap<R>>
    where
        F: Target<(X,), R>,
        X: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<X> = items.into_iter().collect();
        let job =
            crate::pool::RemoteJob::map::<F, X, R>(items, Some(chunksize.unwrap_or(1)), self.1)?;
        let chunks = job.tasks();
        let result = self.start(job, crate::pool::decode_remote_chunks::<R>)?;
        Ok(RemoteIMap {
            result,
            next_chunk: 0,
            chunks,
            ready: std::collections::VecDeque::new(),
            failed: false,
        })
    }

    /// Starts a [`starmap`](PoolProxy::starmap) (Python's `starmap_async`).
    ///
    /// # Errors
    /// As [`apply_async`](PoolProxy::apply_async).
    pub fn starmap_async<F, A, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResultProxy<Vec<R>>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let job = crate::pool::RemoteJob::starmap::<F, A, R>(items, chunksize, self.1)?;
        self.start(job, crate::pool::decode_remote_chunks::<R>)
    }

    /// No more work (Python's `close()`): calls after it fail; [`join`](PoolProxy::join) then
    /// waits for the workers.
    pub fn close(&self) -> Result<()> {
        self.0.done(Op::PoolClose)
    }

    /// Stops the workers at once (Python's `terminate()`).
    pub fn terminate(&self) -> Result<()> {
        self.0.done(Op::PoolTerminate)
    }

    /// Waits for the workers to end, after [`close`](PoolProxy::close) or
    /// [`terminate`](PoolProxy::terminate) (Python's `join()`).
    pub fn join(&self) -> Result<()> {
        self.0.done(Op::PoolJoin)
    }
}

/// The result of a job started on a manager's pool ([`PoolProxy::apply_async`],
/// [`PoolProxy::map_async`]): Python's `AsyncResult` proxy. The job runs whether or not
/// anyone waits for it; its result goes when this proxy is dropped.
pub struct AsyncResultProxy<R> {
    handle: Handle,
    decode: fn(crate::pool::RemoteOutcomes) -> Result<R>,
}

impl<R> std::fmt::Debug for AsyncResultProxy<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResultProxy")
            .field("address", &self.handle.client.address)
            .field("id", &self.handle.id)
            .finish()
    }
}

impl<R> AsyncResultProxy<R> {
    /// Waits for the value: `timeout` `None` waits as long as it takes.
    ///
    /// # Errors
    /// [`Error::Timeout`] if not ready in time (call again); otherwise the job's own error,
    /// as [`AsyncResult::get`](crate::AsyncResult::get).
    pub fn get(&self, timeout: Option<Duration>) -> Result<R> {
        match self.handle.call(Op::ResultGet(secs(timeout))) {
            Ok(Reply::Outcomes(o)) => (self.decode)(o),
            Ok(other) => Err(unexpected(other)),
            Err(Error::Remote { kind, .. }) if kind == "TimeoutError" => Err(Error::Timeout),
            Err(e) => Err(e),
        }
    }

    /// Waits until the job has finished or `timeout` passes; true if it has.
    ///
    /// # Errors
    /// As other proxies' calls (the manager is gone).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.handle.flag(Op::ResultWait(secs(timeout)))
    }

    /// Whether the job has finished.
    ///
    /// # Errors
    /// As [`wait`](AsyncResultProxy::wait).
    pub fn ready(&self) -> Result<bool> {
        self.wait(Some(Duration::ZERO))
    }
}

/// The results of [`PoolProxy::imap`], in order, as they come.
pub struct RemoteIMap<R> {
    result: AsyncResultProxy<Vec<R>>,
    next_chunk: usize,
    chunks: usize,
    ready: std::collections::VecDeque<R>,
    failed: bool,
}

impl<R> std::fmt::Debug for RemoteIMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIMap")
            .field("chunk", &self.next_chunk)
            .field("chunks", &self.chunks)
            .finish()
    }
}

impl<R: DeserializeOwned> Iterator for RemoteIMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            if self.failed || self.next_chunk == self.chunks {
                return None;
            }
            let i = self.next_chunk as u64;
            self.next_chunk += 1;
            let chunk = match self.result.handle.call(Op::ResultChunk(i, None)) {
                Ok(Reply::Outcomes(o)) => (self.result.decode)(o),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e),
            };
            match chunk {
                Ok(items) => self.ready.extend(items),
                Err(e) => {
                    // Like a local imap: the error is the step's, and the rest are lost.
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A shared fixed-length array held by a [`Manager`] (Python's `ArrayProxy`). Indices follow
/// Python: a negative one counts from the end.
pub struct ArrayProxy<T>(Handle, PhantomData<fn() -> T>);
proxy_impls!(ArrayProxy<T>);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The item at `index` (Python's `a[index]`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.0.value(Op::Index(index))
    }

    /// Replaces the item at `index` (Python's `a[index] = value`).
    ///
    /// # Errors
    /// [`Error::Remote`] `IndexError` when out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.0.done(Op::SetIndex(index, encode(value)?))
    }

    /// The number of items (fixed at creation).
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// True for an array of no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items (Python's `a[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.list(Op::Items)
    }
}

/// A shared value held by a [`Manager`] (Python's `ValueProxy`, its `.value`).
pub struct ValueProxy<T>(Handle, PhantomData<fn() -> T>);
proxy_impls!(ValueProxy<T>);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value (Python's `v.value` / `v.get()`).
    pub fn get(&self) -> Result<T> {
        self.0.value(Op::Load)
    }

    /// Replaces the value (Python's `v.value = x` / `v.set(x)`).
    pub fn set(&self, value: &T) -> Result<()> {
        self.0.done(Op::Store(encode(value)?))
    }
}

/// A shared FIFO queue held by a [`Manager`] (Python's `manager.Queue()` and
/// `manager.JoinableQueue()`, proxies of `queue.Queue`): unbounded; a `get` waits in the
/// manager for an item; `task_done`/`join` count the items processed.
pub struct QueueProxy<T>(Handle, PhantomData<fn() -> T>);
proxy_impls!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts `value` at the back.
    pub fn put(&self, value: &T) -> Result<()> {
        self.0.done(Op::QueuePut(encode(value)?))
    }

    /// Takes the front item, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.0.value(Op::QueueGet(None))
    }

    /// Takes the front item, waiting up to `timeout` (`None`: no limit; zero: just look).
    ///
    /// # Errors
    /// [`Error::Empty`] when nothing came in time.
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        match self.0.value(Op::QueueGet(secs(timeout))) {
            Err(Error::Remote { kind, .. }) if kind == "Empty" => Err(Error::Empty),
            other => other,
        }
    }

    /// The number of items waiting (Python's `qsize()`).
    pub fn qsize(&self) -> Result<usize> {
        self.0.len()
    }

    /// True if no item is waiting.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Marks one item taken with `get` as processed (Python's `task_done()`).
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`task_done() called too many times`).
    pub fn task_done(&self) -> Result<()> {
        self.0.done(Op::TaskDone)
    }

    /// Waits until every item put has been marked processed (Python's `join()`), up to
    /// `timeout` (`None`: no limit); true if they all were.
    pub fn join(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.flag(Op::Join(secs(timeout)))
    }
}

impl<K, V> Named for DictProxy<K, V> {
    const KIND: Kind = Kind::Dict;
    fn from_handle(handle: HandleRef) -> Self {
        DictProxy(handle.0, PhantomData)
    }
}

impl<T> Named for ListProxy<T> {
    const KIND: Kind = Kind::List;
    fn from_handle(handle: HandleRef) -> Self {
        ListProxy(handle.0, PhantomData)
    }
}

impl<T> Named for QueueProxy<T> {
    const KIND: Kind = Kind::Queue;
    fn from_handle(handle: HandleRef) -> Self {
        QueueProxy(handle.0, PhantomData)
    }
}

fn secs(timeout: Option<Duration>) -> Option<f64> {
    timeout.map(|t| t.as_secs_f64())
}

/// A lock held by a [`Manager`] (Python's `manager.Lock()`, a proxy of `threading.Lock`): any
/// process may release it, as with `threading.Lock`. Beyond Python, a lock whose holder's
/// connection closes (its process died) is released.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockProxy(Handle);

impl LockProxy {
    /// Takes the lock: with `block`, waits up to `timeout` (`None`: no limit); without, tries
    /// once. True if taken (Python's `acquire(block, timeout)`).
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    /// Releases the lock.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` (`release unlocked lock`) if it is not held.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }
}

/// An event held by a [`Manager`] (Python's `manager.Event()`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventProxy(Handle);

impl EventProxy {
    /// Sets the event, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.0.done(Op::Set)
    }

    /// Clears the event.
    pub fn clear(&self) -> Result<()> {
        self.0.done(Op::Clear)
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }

    /// Waits until the event is set, up to `timeout` (`None`: no limit); true if it is.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.flag(Op::Wait(secs(timeout)))
    }
}

/// A re-entrant lock held by a [`Manager`] (Python's `manager.RLock()`): acquired again by the
/// thread that holds it (through this proxy or a clone), released as many times; a holder
/// whose process dies releases it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RLockProxy(Handle);

impl RLockProxy {
    /// Takes the lock (again, if this thread holds it): with `block`, waits up to `timeout`
    /// (`None`: no limit); without, tries once. True if taken.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    /// Releases one level.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` (`cannot release un-acquired lock`) unless this thread
    /// holds it.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }
}

/// A semaphore held by a [`Manager`] (Python's `manager.Semaphore()` and
/// `manager.BoundedSemaphore()`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SemaphoreProxy(Handle);

impl SemaphoreProxy {
    /// Takes one unit: with `block`, waits up to `timeout` (`None`: no limit); without, tries
    /// once. True if taken.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    /// Gives one unit back.
    ///
    /// # Errors
    /// [`Error::Remote`] `ValueError` (`Semaphore released too many times`) above a bounded
    /// semaphore's initial value.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// The counter's value now (Python's `get_value()`).
    pub fn get_value(&self) -> Result<u32> {
        self.0.len().map(|n| n as u32)
    }
}

/// A namespace held by a [`Manager`] (Python's `manager.Namespace()`): named attributes, each
/// of any serde type (read back as the type it was written as).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceProxy(Handle);

impl NamespaceProxy {
    /// Attribute `name` (Python's `ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.0.value(Op::GetItem(encode(name)?)) {
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(Error::Remote {
                kind: "AttributeError".into(),
                message: format!("'Namespace' object has no attribute '{name}'"),
            }),
            other => other,
        }
    }

    /// Sets attribute `name` (Python's `ns.name = value`).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.0.done(Op::SetItem(encode(name)?, encode(value)?))
    }

    /// Removes attribute `name` (Python's `del ns.name`).
    ///
    /// # Errors
    /// [`Error::Remote`] `AttributeError` if there is none.
    pub fn del(&self, name: &str) -> Result<()> {
        match self.0.done(Op::DelItem(encode(name)?)) {
            Err(Error::Remote { kind, .. }) if kind == "KeyError" => Err(Error::Remote {
                kind: "AttributeError".into(),
                message: name.to_string(),
            }),
            other => other,
        }
    }
}

/// A barrier held by a [`Manager`] (Python's `manager.Barrier(parties)`). Beyond Python, a
/// waiting party whose process dies breaks the barrier for the others instead of leaving them
/// waiting for ever.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BarrierProxy(Handle);

impl BarrierProxy {
    /// Waits until all parties have called `wait`, up to `timeout` (`None`: no limit); returns
    /// this party's arrival index (0 for the first), as Python's.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (a timeout, `abort`,
    /// `reset`, or a party that died).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        match self.0.call(Op::BarrierWait(secs(timeout))) {
            Ok(Reply::Len(i)) => Ok(i as u32),
            Ok(other) => Err(unexpected(other)),
            Err(Error::Remote { kind, .. }) if kind == "BrokenBarrierError" => {
                Err(Error::BrokenBarrier)
            }
            Err(e) => Err(e),
        }
    }

    /// Breaks the barrier: every waiter, and every later `wait`, gets
    /// [`Error::BrokenBarrier`] until [`reset`](BarrierProxy::reset).
    pub fn abort(&self) -> Result<()> {
        self.0.done(Op::Abort)
    }

    /// Returns the barrier to its first state; parties waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) -> Result<()> {
        self.0.done(Op::Reset)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.0.flag(Op::Locked)
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        self.0.len().map(|n| n as u32)
    }
}

/// A condition variable held by a [`Manager`] (Python's `manager.Condition()`), over its own
/// re-entrant lock, which belongs to the thread that acquired it (through this proxy or a
/// clone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConditionProxy(Handle);

impl ConditionProxy {
    /// Takes the lock (again, if this thread holds it): with `block`, waits up to
    /// `timeout`; without, tries once. True if taken.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.0.acquire(block, timeout)
    }

    /// Releases one level of the lock.
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` unless this thread holds it.
    pub fn release(&self) -> Result<()> {
        self.0.done(Op::Release)
    }

    /// Releases the lock, waits to be notified (up to `timeout`; `None`: no limit), takes
    /// the lock back; true if notified (Python's `wait(timeout)`).
    ///
    /// # Errors
    /// [`Error::Remote`] `RuntimeError` unless this thread holds the lock.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.flag(Op::Wait(secs(timeout)))
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`); the lock must be held.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.0.done(Op::Notify(Some(n)))
    }

    /// Wakes every waiter (Python's `notify_all()`); the lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.0.done(Op::Notify(None))
    }
}
