//! # multiprocess — Python's `multiprocessing`, in Rust
//!
//! Start work in other processes with Python's names and rules: a [`Process`] runs a function
//! in a child started by **spawn** (re-running this program, on every OS), **fork** or
//! **forkserver** (Unix), and reports its exit code, as Python does, and its return value, which Python cannot.
//!
//! ```standalone_crate
//! use multiprocess::Process;
//!
//! fn worker(sec: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_millis(sec));
//!     sec * 2
//! }
//!
//! # fn main() -> multiprocess::Result<()> {
//! multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
//! let mut p = Process::new(worker, (5,)).with_name("child");
//! p.start()?;
//! println!("{:?} {} {}", p.pid(), p.name(), p.is_alive()?);
//! p.join()?;
//! assert_eq!(p.exitcode()?, Some(0));
//! assert_eq!(p.result::<u64>()?, 10);
//! # Ok(()) }
//! ```
//!
//! ## The entry point
//! Call [`init`] as the first line of `main`: it is the Rust form of Python's
//! `if __name__ == "__main__":`. A spawned child runs the same executable; its `init()` runs the
//! child's target and exits instead of returning. In tests, call [`init_test`] first in each test
//! that starts processes.
//!
//! ## Python → Rust
//!
//! | Python `multiprocessing` | `multiprocess` |
//! |---|---|
//! | `if __name__ == "__main__":` | [`init()`] first in `main`; [`init_test()`] first in a test |
//! | `Process(target=f, args=(5,))` | [`Process::new(f, (5,))`](Process::new) |
//! | `Process(target=f, kwargs={...})` | a struct parameter: `Process::new(f, (Kwargs { .. },))` |
//! | subclass `Process`, override `run` | a serde type implementing [`Run`]; [`Process::from_run`] |
//! | `name=`, `daemon=` | builder [`Process::name`], [`Process::daemon`], [`Process::authkey`] |
//! | `p.start()`, `p.join()`, `p.join(timeout)` | [`start`](Process::start), [`join()`](Process::join), [`join_timeout(d)`](Process::join_timeout) |
//! | `p.is_alive()`, `p.exitcode`, `p.pid` | [`is_alive`](Process::is_alive), [`exitcode`](Process::exitcode), [`pid`](Process::pid) |
//! | `p.name`, `p.daemon`, `p.authkey` | [`name`](Process::name)/[`set_name`](Process::set_name), [`daemon`](Process::daemon)/[`set_daemon`](Process::set_daemon), [`authkey`](Process::authkey) (the same names as on [`current_process()`](current_process)); builder forms [`with_name`](Process::with_name), [`with_daemon`](Process::with_daemon), [`with_authkey`](Process::with_authkey), [`with_context`](Process::with_context) |
//! | `p.terminate()`, `p.kill()`, `p.close()` | [`terminate`](Process::terminate), [`kill`](Process::kill), [`close`](Process::close) |
//! | `p.sentinel` | [`sentinel`](Process::sentinel), waitable with [`wait`] |
//! | `p.run()` | [`run`](Process::run) (returns the value) |
//! | — | [`result`](Process::result): the target's return value, or why there is none |
//! | `current_process()`, `parent_process()` | [`current_process`], [`parent_process`] |
//! | `active_children()`, `cpu_count()` | [`active_children`], [`cpu_count`] (honours affinity) |
//! | `get_context(m)`, `get_context()`, `set_start_method(m)`, `set_start_method(m, force=True)` | [`get_context(StartMethod::Fork)`](get_context), [`default_context`], [`set_start_method`], [`set_start_method_force`] (names parse with `"fork".parse::<StartMethod>()`) |
//! | `multiprocessing.forkserver.ensure_running()` | [`forkserver::ensure_running`] |
//! | `get_start_method()`, `get_start_method(allow_none=True)`, `get_all_start_methods()` | [`get_start_method`], [`get_start_method_allow_none`], [`get_all_start_methods`] |
//! | `ctx.Process(...)` | [`Context::process`], or [`Process::with_context`] |
//! | `Pipe(duplex)` | [`if duplex { pipe() } else { pipe_one_way() }`](pipe) → two [`Connection`]s |
//! | `c.send(obj)`, `c.recv()` | [`send`](Connection::send), [`recv`](Connection::recv) (serde values); beyond Python, [`recv_timeout`](Connection::recv_timeout) and [`recv_bytes_timeout`](Connection::recv_bytes_timeout), which a peer silent in the middle of a message cannot hold, and [`send_timeout`](Connection::send_timeout)/[`send_bytes_timeout`](Connection::send_bytes_timeout), which a peer that stops reading cannot hold |
//! | `c.send_bytes`, `c.recv_bytes`, `c.recv_bytes_into`, `c.poll` | [`send_bytes`](Connection::send_bytes)/[`send_bytes_range`](Connection::send_bytes_range), [`recv_bytes`](Connection::recv_bytes)/[`recv_bytes_max`](Connection::recv_bytes_max), [`recv_bytes_into`](Connection::recv_bytes_into), [`poll`](Connection::poll) |
//! | `Listener(address, authkey=k)`, `Client(address, authkey=k)`, `listener.accept()` | [`connection::Listener::bind`], [`connection::client`], [`accept`](connection::Listener::accept); beyond Python, [`accept_timeout`](connection::Listener::accept_timeout), [`connection::client_timeout`] |
//! | `multiprocessing.connection.wait` | [`wait`] |
//! | `wait([sock, ...])` (sockets) | [`wait`] on `&TcpStream`, `&TcpListener`, `&UdpSocket`, and on Unix `&UnixStream`, ... |
//! | `Queue(maxsize)`, `SimpleQueue`, `JoinableQueue` | [`Queue::bounded`]/[`Queue::new`], [`SimpleQueue`], [`JoinableQueue`] |
//! | `q.put(obj, block, timeout)`, `q.get(block, timeout)` | [`put`](Queue::put)/[`put_timeout`](Queue::put_timeout), [`get`](Queue::get)/[`get_timeout`](Queue::get_timeout) |
//! | `queue.Full`, `queue.Empty` | [`Error::Full`], [`Error::Empty`] |
//! | — | [`Queue::put_many`]/[`Queue::put_many_timeout`], [`Queue::get_many`] (one lock per batch) |
//! | `bytes` in messages | [`Bytes`] (serde bytes, one block; a `Vec<u8>` goes byte by byte) |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` | [`Lock`], [`RLock`], [`Semaphore`], [`Semaphore::bounded`] |
//! | `Event`, `Condition`, `Barrier` | [`Event`], [`Condition`], [`Barrier`] |
//! | `l.acquire()`, `l.acquire(False)`, `l.acquire(timeout=t)`, `l.acquire(block, timeout)` | [`acquire`](Lock::acquire), [`try_acquire`](Lock::try_acquire), [`acquire_timeout`](Lock::acquire_timeout), [`acquire_with`](Lock::acquire_with) (the same on [`RLock`], [`Semaphore`], [`Condition`] and the manager's proxies) |
//! | `e.wait()`, `e.wait(timeout)` | [`wait`](Event::wait), [`wait_timeout`](Event::wait_timeout) (the same on [`Condition`], [`Barrier`], [`Sentinel`], [`AsyncResult`]) |
//! | `with lock:` | [`Lock::guard`] (RAII) |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] |
//! | `v.get_lock()`; `with v.get_lock(): v.get_obj().value += 1`; `a[i:j]`, `a[i:j] = xs` | [`get_lock`](Value::get_lock); `*v.lock()? += 1` (the guard is the locked object: `get_obj` is not given, as an unlocked view beside the guard's `&mut T` would let safe code race with it); [`get_slice`](Array::get_slice), [`set_slice`](Array::set_slice) (also on [`RawArray`]) |
//! | `shared_memory.SharedMemory` | [`SharedMemory`] |
//! | `resource_tracker.ensure_running()`, `register(name, 'shared_memory')`, `unregister`, `getfd()` | [`resource_tracker::ensure_running`], [`register`](resource_tracker::register), [`unregister`](resource_tracker::unregister), [`getfd`](resource_tracker::getfd), [`pid`](resource_tracker::pid) |
//! | `shared_memory.ShareableList` | [`ShareableList`] (items: [`shared_memory::Item`]; CPython's layout) |
//! | `Pool`, `AsyncResult` | [`Pool`], [`AsyncResult`] |
//! | `concurrent.futures.ProcessPoolExecutor(max_workers, ...)` | [`executor::ProcessPoolExecutor::new`], [`executor::ProcessPoolExecutor::builder`] |
//! | `executor.submit(fn, *args)`, `.map(fn, it, timeout, chunksize)`, `.shutdown(wait, cancel_futures)` | [`submit`](executor::ProcessPoolExecutor::submit) → [`executor::Future`], [`map`](executor::ProcessPoolExecutor::map), [`shutdown`](executor::ProcessPoolExecutor::shutdown) (also on drop); beyond Python, [`shutdown_timeout`](executor::ProcessPoolExecutor::shutdown_timeout) |
//! | `Future.result`, `.exception`, `.cancel`, `.cancelled`, `.running`, `.done`, `.add_done_callback` | [`executor::Future`]'s methods of the same names |
//! | `concurrent.futures.wait(fs, timeout, return_when)`, `as_completed(fs, timeout)` | [`executor::wait`] with [`executor::ReturnWhen`], [`executor::as_completed`] |
//! | `BrokenProcessPool`, `CancelledError` | none: a dead worker fails only its task ([`Error::WorkerLost`]); [`Error::Cancelled`] |
//! | `mpi4py.futures` SPMD mode (`mpiexec -n N python -m mpi4py.futures app.py`) | `PoolBuilder::mpi` (cargo feature `mpi`): workers on the ranks of `mpirun -n N app` |
//! | `mpi4py.futures.MPIPoolExecutor(max_workers)` (spawn mode) | `PoolBuilder::mpi` in a program run alone or by `mpirun -n 1`: the pool spawns its ranks |
//! | `threading.BrokenBarrierError` | [`Error::BrokenBarrier`] |
//! | — (Python deadlocks) | [`Error::OwnerDied`], [`Error::WorkerLost`] |
//! | — (beyond Python) | `result.await` ([`AsyncResult`] is `IntoFuture`); with the cargo feature `tokio`: `Process::join_async`, `Connection::{send,recv,send_bytes,recv_bytes}_async`, `connection::Listener::accept_async`, `wait_async`, [`IMap`] as a `futures_core::Stream`, `Queue::{get,put}_async`, `JoinableQueue::join_async` |
//! | `AsyncResult.get()`, `get(timeout)` raising `TimeoutError` | [`get()`](AsyncResult::get), [`get_timeout(d)`](AsyncResult::get_timeout): [`Error::Timeout`] (the task goes on); a task past its own limit (beyond Python): [`Error::TaskTimeout`] |
//! | `sys.exit(n)` in a child | [`exit`] or `std::process::exit` |
//! | exceptions (`ValueError`, `AssertionError`, `TimeoutError`, `BufferTooShort`, ...) | [`Error`] variants |
//! | `Manager()`, `manager.dict()`, `.list()`, `.Value(t, v)`, `.Queue(maxsize)` | [`Manager::start`], [`Manager::dict`], [`Manager::list`], [`Manager::value`], [`Manager::queue`], [`Manager::bounded_queue`] (typed proxies in [`managers`]) |
//! | `manager.dict(pairs)`, `manager.list(iterable)` | [`Manager::dict_from`], [`Manager::list_from`] |
//! | a list proxy's `append`, `extend`, `insert`, `pop()`, `pop(i)`, `remove`, `index`, `count`, `x in l`, `reverse`, `sort(key=f)`, `l[a:b]`, `l[a:b] = xs`, `del l[a:b]`, `l *= n` | [`managers::ListProxy`]: the same names, `pop_at(i)`, `contains`, `sort`/`sort_by_key(f)`/`sort_by(cmp)`, `get_slice(a..b)`, `set_slice(a..b, xs)`, `del_slice(a..b)`, `repeat(n)` |
//! | a dict proxy's `d[k]`, `get(k, default)`, `keys`, `values`, `items`, `update`, `pop(k[, default])`, `popitem`, `setdefault`, `copy`, `k in d` | [`managers::DictProxy`]: `get_item`, `get`/`get_or`, the same names, `pop`/`pop_or`, `copy` (into a `HashMap`, `BTreeMap` or `Vec`), `contains_key` |
//! | `.Lock()`, `.RLock()`, `.Semaphore(n)`, `.BoundedSemaphore(n)`, `.Condition()`, `.Event()`, `.Barrier(n)`, `.Namespace()` | [`Manager::lock`], [`Manager::rlock`], [`Manager::semaphore`], [`Manager::bounded_semaphore`], [`Manager::condition`], [`Manager::event`], [`Manager::barrier`] (`parties`, `n_waiting`, `broken`), [`Manager::namespace`] (prints as `Namespace(name='Bob')`) |
//! | `.JoinableQueue(maxsize)`; a queue proxy's `put`, `get`, `put_nowait`, `get_nowait`, `full`, `qsize` | [`Manager::queue`]/[`Manager::bounded_queue`] (its proxy has `task_done`, `join`, the same names, and `maxsize`) |
//! | `BaseManager(address, authkey)`: `start()`, `start(initializer, initargs)`, `connect()`, `register(name, ...)` | [`Manager::start_at`], [`Manager::builder`] (`.initializer(f, args).start()`), [`Manager::connect`] (beyond Python, [`Manager::connect_timeout`], and [`Manager::set_timeout`] for every call of its proxies), [`Manager::named`] |
//! | `get_server().serve_forever()` | [`Manager::server`] → [`managers::ManagerServer::serve_forever`] |
//! | `register('Counter', Counter)`, `m.Counter(...)`, `_getvalue()` | [`managers::Managed`], [`Manager::create`], [`managers::Proxy`] |
//! | `m.Array(typecode, seq)` | [`Manager::array`] → [`managers::ArrayProxy`] |
//! | `SharedMemoryManager()`: `SharedMemory(size)`, `ShareableList(seq)`, `shutdown()` | [`managers::SharedMemoryManager`]: [`shared_memory`](managers::SharedMemoryManager::shared_memory), [`shareable_list`](managers::SharedMemoryManager::shareable_list), [`shutdown`](managers::SharedMemoryManager::shutdown) |
//! | `m.Pool(n)`, its `imap`/`imap_unordered`, its `apply_async`/`map_async` results | [`Manager::pool`] → [`managers::PoolProxy`], [`managers::AsyncResultProxy`] |
//! | `log_to_stderr(level)`, `get_logger()` | [`log::log_to_stderr`], [`log::get_logger`]; the same events through `tracing` |
//! | a task's remote traceback (`RemoteTraceback`, the `__cause__`) | with `RUST_BACKTRACE=1`, the child's backtrace after the message of [`Error::Panicked`] |
//! | `util.Finalize(None, cb, exitpriority=p)` | [`util::Finalize::new(cb, Some(p))`](util::Finalize): `call()`, `cancel()`, `still_active()`; run at exit by priority |
//! | `reduction.send_handle`, `recv_handle` | [`Handle`] (sent inside any message) |
//! | a remote exception re-raised by a proxy | [`Error::Remote`] (`kind` is Python's exception name) |
//!
//! The README's feature table says what works today.
//!
//! ## Start methods
//! - **spawn** (default): runs this executable again. The target must be a function item or a
//!   non-capturing closure (found in the child's copy of the executable by its offset, after an
//!   executable-identity check), or a [`Run`] value; arguments and results are serde types.
//! - **fork** (Unix): any `FnOnce() -> R + Send + 'static` closure via
//!   [`Process::from_closure`]; a target's arguments (or a [`Run`] value) reach the child as
//!   they are, neither encoded nor decoded, as Python's fork passes them unpickled. Unsafe to
//!   combine with threads, as in C and Python.
//! - **forkserver** (Unix): a server process, started on first use, forks each child, which
//!   then takes its target and arguments as a spawned one does: spawn's rules, without
//!   re-running the program (3.5× faster to start than spawn here: W1), and safe from a
//!   threaded program.
//!   See [`forkserver`].
//!
//! ## Exit codes and the exit policy
//! 0 when the target returns; 1 when it panics (stderr gets `Process <name>:` then the panic
//! message); `n & 0xFF` after `exit(n)`; `-N` when killed by signal N. Windows has no signals:
//! there `terminate()` and `kill()` both end the child with `TerminateProcess` and its exitcode
//! is `-15`, as CPython reports it. When the program exits, daemonic children are terminated and
//! all children are joined (Python's rule). Beyond Python, a daemonic child also ends, within
//! moments, when its parent is killed outright.

// `unsafe` only where the OS or shared memory demands it: `sys`, and the modules that own shared
// memory (each block with a `SAFETY:` comment).
#![deny(unsafe_code)]

mod bootstrap;
pub mod connection;
mod context;
mod error;
pub mod executor;
pub mod forkserver;
pub mod log;
pub mod managers;
mod panics;
pub mod pool;
mod process;
#[allow(unsafe_code)]
mod queues;
mod registry;
#[allow(unsafe_code)]
pub mod shared_memory;
#[allow(unsafe_code)]
mod sharedctypes;
mod synchronize;
#[allow(unsafe_code)]
mod sys;
mod wire;

pub use bootstrap::{exit, init, init_test};
#[cfg(feature = "tokio")]
pub use connection::wait_async;
pub use connection::{Connection, Waitable, pipe, pipe_one_way, wait};
pub use context::{
    Context, StartMethod, default_context, get_all_start_methods, get_context, get_start_method,
    get_start_method_allow_none, set_start_method, set_start_method_force,
};
pub use error::{Error, Result};
pub use managers::Manager;
pub use pool::{AsyncResult, IMap, Pool, PoolBuilder, TaskOptions};
pub use process::{
    AuthKey, CurrentProcess, ParentProcess, Process, Sentinel, active_children, cpu_count,
    current_process, parent_process,
};
pub use queues::{JoinableQueue, Queue, SimpleQueue};
pub use registry::{Run, Target};
pub use shared_memory::{ShareableList, SharedMemory, resource_tracker};
pub use sharedctypes::{Array, ArrayGuard, Pod, RawArray, RawValue, Value, ValueGuard, Zeroable};
pub use synchronize::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, Lock, LockGuard,
    RLock, RLockGuard, Semaphore, SemaphoreGuard,
};
pub use wire::{Bytes, Handle};

/// Python's `multiprocessing.util`: what of it a program uses.
pub mod util {
    pub use crate::process::Finalize;
}

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
