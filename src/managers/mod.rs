//! Python's `multiprocessing.managers`: a [`Manager`] process holds shared objects (dicts,
//! lists, values, queues), and proxies in any process operate on them by messages.
//!
//! ```standalone_crate
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
//! parent, as in Python). When the manager listens on a local socket (the default), that
//! connection then carries its calls through two rings in shared memory, as a
//! [`Queue`](crate::Queue)'s (the socket stays open to tell either side when the other is
//! gone); over TCP they stay on the socket.
//!
//! A failed call comes back as [`Error::Remote`] with Python's exception
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Address, Connection, client, client_until};
use crate::error::{Error, Result};
use crate::process::{Process, current_process, lock};
use crate::registry::{Code, Target};
use crate::sys::fork_lock::ForkLock;
use crate::wire::{self, Bytes};

mod collections;
mod custom;
mod pool_proxy;
mod protocol;
mod queue_proxy;
mod refs;
mod repr;
mod rings;
mod segments;
mod server;
mod sync;

pub use collections::{ArrayProxy, DictProxy, ListProxy, NamespaceProxy, ValueProxy};
pub use custom::{Managed, Proxy};
pub use pool_proxy::{AsyncResultProxy, PoolProxy, RemoteIMap};
#[doc(hidden)]
pub use protocol::Kind;
use protocol::*;
pub use queue_proxy::QueueProxy;
use refs::*;
use rings::Rings;
pub use segments::SharedMemoryManager;
use sync::secs;
pub use sync::{BarrierProxy, ConditionProxy, EventProxy, LockProxy, RLockProxy, SemaphoreProxy};

/// A manager: a server process holding shared objects (Python's `multiprocessing.Manager()`,
/// a `SyncManager`), or a connection to one started elsewhere ([`Manager::connect`]).
///
/// Dropping the `Manager` that started the server shuts it down (Python's `shutdown()`);
/// proxies then fail with an I/O error.
///
/// ```standalone_crate
/// use multiprocess::managers::{DictProxy, ListProxy};
/// use multiprocess::{Manager, Process};
///
/// /// Changes the manager's dict and list from another process.
/// fn update(d: DictProxy<String, u32>, l: ListProxy<u32>) {
///     d.set(&"answer".to_string(), &42).unwrap();
///     l.append(&7).unwrap();
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?; // a server process holding the objects
/// let d = manager.dict::<String, u32>()?;
/// let l = manager.list_from([1u32, 2])?;
/// let mut p = Process::new(update, (d.clone(), l.clone()));
/// p.start()?;
/// p.join()?;
/// assert_eq!(d.get(&"answer".to_string())?, Some(42));
/// assert_eq!(l.to_vec()?, [1, 2, 7]);
/// # Ok(()) } // dropping the manager shuts its server down
/// ```
#[derive(Debug)]
pub struct Manager {
    client: Arc<Client>,
    process: Option<Process>,
}

impl Manager {
    /// Starts a manager process listening on a fresh local address (a Unix socket; a named
    /// pipe on Windows) with this process's `authkey`, by the default start method. The
    /// process is daemonic: it ends with this one at the latest. [`Manager::builder`] gives
    /// it an address, a key or an initializer.
    ///
    /// # Errors
    /// As [`Process::start`], or the server's own error if it could not listen;
    /// [`Error::Bootstrap`] naming the fix if the server's process never reached
    /// [`init`](crate::init) (the program's `main` lacks it).
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Starts a manager process listening on `address` (`None`: a fresh local one) and
    /// accepting clients that know `authkey` (Python's `BaseManager(address, authkey)` +
    /// `start()`): e.g. `Address::Tcp("0.0.0.0:50000".parse()?)` for other hosts.
    ///
    /// # Errors
    /// As [`Manager::start`].
    pub fn start_at(address: Option<Address>, authkey: &[u8]) -> Result<Manager> {
        let builder = Manager::builder().authkey(authkey);
        match address {
            Some(address) => builder.address(address),
            None => builder,
        }
        .start()
    }

    /// How to start a manager: its address, key and initializer (Python's
    /// `BaseManager(address, authkey)` + `start(initializer, initargs)`).
    ///
    /// ```standalone_crate
    /// # fn main() -> multiprocess::Result<()> {
    /// # multiprocess::init_test();
    /// use multiprocess::Queue;
    /// // Runs in the manager's process before it serves.
    /// fn set_up(log: Queue<String>) {
    ///     log.put(&format!("manager {} ready", std::process::id())).unwrap();
    /// }
    /// let log = Queue::new()?;
    /// let manager = multiprocess::Manager::builder()
    ///     .initializer(set_up, (log.clone(),))
    ///     .start()?;
    /// let pid = manager.process().and_then(|p| p.pid()).unwrap();
    /// assert_eq!(log.get()?, format!("manager {pid} ready"));
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    fn started(mut process: Process, ours: Connection, authkey: Vec<u8>) -> Result<Manager> {
        process.start()?;
        let address = match ours.recv::<std::result::Result<Address, String>>() {
            Ok(Ok(address)) => address,
            Ok(Err(e)) => {
                // It ends by itself once it has said why.
                let _ = process.join_timeout(Duration::from_secs(5));
                if process.is_alive().unwrap_or(false) {
                    let _ = process.kill();
                    let _ = process.join();
                }
                return Err(Error::state(format!("the manager could not start: {e}")));
            }
            Err(e) => {
                // A server that never ran (its program lacks `init()`) says why.
                let why = process.start_failure(Duration::from_secs(5));
                let _ = process.kill();
                let _ = process.join();
                return Err(why.unwrap_or(e));
            }
        };
        Ok(Manager {
            client: Client::new(address, authkey),
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
        Manager::connect_until(address, authkey, None)
    }

    /// [`connect`](Manager::connect) within `timeout` (beyond Python): a manager that does
    /// not accept (its listener's backlog full, its host not answering) or does not answer
    /// the handshake holds it no longer. (Later connections of its proxies, one per thread,
    /// connect as [`connect`](Manager::connect) does.)
    ///
    /// # Errors
    /// [`Error::Timeout`] if the manager was not connected and introduced in time; otherwise
    /// as [`connect`](Manager::connect).
    pub fn connect_timeout(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Manager> {
        Manager::connect_until(address, authkey, crate::sys::deadline_after(timeout))
    }

    fn connect_until(
        address: &Address,
        authkey: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Manager> {
        let client = Client::new(address.clone(), authkey.to_vec());
        client.connection_in_table(deadline)?;
        Ok(Manager {
            client,
            process: None,
        })
    }

    /// Where the manager listens.
    pub fn address(&self) -> &Address {
        &self.client.address
    }

    /// Bounds every later call of this manager's proxies (beyond Python, whose proxies wait
    /// as long as the manager takes): a call not answered within `timeout` after the wait it
    /// asks for fails with [`Error::Timeout`], so that a manager that hangs, or a remote one
    /// whose host is lost, holds no caller for ever. `None` (the default): no bound.
    ///
    /// - A call that asks the manager to wait up to `t` (`QueueProxy::get_timeout(Some(t))`,
    ///   `LockProxy::acquire_timeout(t)`...) may take `t` + `timeout`; one that asks it to
    ///   wait as long as it takes (`get()`, `acquire()`, `wait()`, a pool's `apply` or `map`)
    ///   is not bounded: that wait is what it asked for.
    /// - A call that gives up abandons its connection (the thread's next call opens another):
    ///   the manager takes it as a holder gone, so locks taken through it are released, and a
    ///   reply that comes later is lost with it (an item a slow manager took from a queue for
    ///   that call, for one).
    /// - It applies to the proxies made by this `Manager` and their clones in this process,
    ///   and travels with a proxy passed to another process.
    ///
    /// ```
    /// # multiprocess::init_test();
    /// use std::time::Duration;
    /// let manager = multiprocess::Manager::start()?;
    /// manager.set_timeout(Some(Duration::from_secs(30)));
    /// let d = manager.dict::<u32, u32>()?;
    /// d.set(&1, &10)?;
    /// assert_eq!(d.get(&1)?, Some(10));
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.client.set_timeout(timeout);
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

    /// A new shared dict holding `pairs` (Python's `manager.dict(pairs)` or
    /// `manager.dict(mapping)`): a later pair for the same key replaces the value, keeping the
    /// first one's place. `manager.dict_from([("a".to_string(), 1)])`, or a `HashMap`.
    pub fn dict_from<K: Serialize, V: Serialize>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((encode(&k)?, encode(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        let handle = self.make(Kind::Dict, Some(encode(&pairs)?.into()))?;
        Ok(DictProxy(handle, PhantomData))
    }

    /// A new shared list (Python's `manager.list()`).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy(self.make(Kind::List, None)?, PhantomData))
    }

    /// A new shared list holding `items` (Python's `manager.list(iterable)`):
    /// `manager.list_from(0..10)`, `manager.list_from(vec!["a".to_string()])`.
    pub fn list_from<T: Serialize>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let items = items
            .into_iter()
            .map(|x| encode(&x))
            .collect::<Result<Vec<_>>>()?;
        let handle = self.make(Kind::List, Some(encode(&items)?.into()))?;
        Ok(ListProxy(handle, PhantomData))
    }

    /// A new shared value holding `initial` (Python's `manager.Value(typecode, value)`; the
    /// type is `T`).
    pub fn value<T: Serialize>(&self, initial: &T) -> Result<ValueProxy<T>> {
        let handle = self.make(Kind::Value, Some(encode(initial)?.into()))?;
        Ok(ValueProxy(handle, PhantomData))
    }

    /// A new shared FIFO queue, unbounded (Python's `manager.Queue()`).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.bounded_queue(0)
    }

    /// A new shared FIFO queue holding at most `maxsize` items (Python's
    /// `manager.Queue(maxsize)`; 0: no limit): a [`put`](QueueProxy::put) waits in the
    /// manager while it is full.
    pub fn bounded_queue<T>(&self, maxsize: u32) -> Result<QueueProxy<T>> {
        Ok(QueueProxy(
            self.make(Kind::Queue(maxsize), None)?,
            PhantomData,
        ))
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
        let handle = self.make(Kind::List, Some(encode(&items)?.into()))?;
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
        let request = Request::CreateCustom(custom::entry_of::<T>()?, encode(initial)?.into());
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
    /// ```standalone_crate
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
        // As Python's: ask, give it a second, terminate, give it another, kill (which also
        // ends a manager that is stopped or hangs; the request to one is bounded too, as
        // generously as a handshake).
        let wait = Duration::from_secs(1);
        let asking = crate::connection::HANDSHAKE_TIMEOUT;
        let _ = self
            .client
            .call_until(&Request::Shutdown, crate::sys::deadline_after(asking));
        process.join_timeout(wait)?;
        if process.is_alive()? {
            process.terminate()?;
            process.join_timeout(wait)?;
        }
        if process.is_alive()? {
            process.kill()?;
            process.join()?;
        }
        Ok(())
    }
}

/// How to start a [`Manager`] ([`Manager::builder`]): Python's `BaseManager(address,
/// authkey)` and the arguments of its `start(initializer, initargs)`.
#[derive(Default)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    /// The manager's process, given its pipe end, address and key (a target that runs the
    /// initializer first, if there is one).
    process: Option<ServerProcess>,
}

type ServerProcess = Box<dyn FnOnce(Connection, Option<Address>, Vec<u8>) -> Process>;

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("address", &self.address)
            .field("initializer", &self.process.is_some())
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// Where the manager listens (default: a fresh local address): e.g.
    /// `Address::Tcp("0.0.0.0:50000".parse()?)` for other hosts, port 0 for one the OS picks.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The key clients must know (default: this process's `authkey`, which its children
    /// inherit).
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.authkey = Some(authkey.to_vec());
        self
    }

    /// A function the manager process runs once, with `args`, before it serves (Python's
    /// `start(initializer, initargs)`): to set up logging, signal handling or state of its
    /// own there. It travels as a process target does (code of this build, arguments
    /// encoded: they may hold OS handles and proxies), so it follows the same rules: a
    /// function, or a closure capturing nothing.
    ///
    /// If it panics, [`start`](ManagerBuilder::start) fails with its message.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A, ()>,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        crate::registry::no_capture!(F);
        let _ = f; // F names the code: the manager's process finds it by its type
        self.process = Some(Box::new(move |ready, address, authkey| {
            Process::new(server::serve_with::<F, A>, (ready, address, authkey, args))
        }));
        self
    }

    /// Starts the manager process (daemonic: it ends with this one at the latest), by the
    /// default start method, and waits until it listens.
    ///
    /// # Errors
    /// As [`Process::start`]; [`Error::State`] with the server's own reason if it could not
    /// listen or its initializer panicked.
    pub fn start(self) -> Result<Manager> {
        let authkey = self
            .authkey
            .unwrap_or_else(|| current_process().authkey().to_vec());
        let (ours, theirs) = crate::pipe()?;
        let address = self.address;
        let process = match self.process {
            Some(make) => make(theirs, address, authkey.clone()),
            None => Process::new(server::serve, (theirs, address, authkey.clone())),
        }
        .with_name("Manager")
        .with_daemon(true);
        Manager::started(process, ours, authkey)
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
                if $crate::managers::in_repr() {
                    // Printed (inside a namespace's attribute): `DictProxy(3)`.
                    return s.serialize_newtype_struct(stringify!($name), &self.0.id);
                }
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
