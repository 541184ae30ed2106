//! The manager's server process: a [`Listener`] whose every accepted connection gets a thread
//! that answers [`Request`]s on the objects this process holds.
//!
//! Objects are kept as encoded bytes (the server never needs their Rust types): a dict maps
//! encoded keys to encoded values, in insertion order as Python's does; a list and a queue hold
//! encoded items. One lock guards them all, with one condition variable for whoever waits
//! (a queue reader, a lock acquirer, an event waiter). A lock held by a client that hangs up
//! (its process died) is released: Python's stays locked forever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Kind, Op, Reply, Request};
use crate::connection::{Address, Connection, Listener};
use crate::error::Error;
use crate::process::lock;
use crate::wire::Bytes;

/// The target of the manager's process: binds a listener, reports its address (or why it
/// could not) on `ready`, then serves until told to shut down.
pub(crate) fn serve(ready: Connection, address: Option<Address>, authkey: Vec<u8>) {
    let listener = match Listener::bind(address, Some(&authkey)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(&Err::<Address, String>(e.to_string()));
            return;
        }
    };
    if ready
        .send(&Ok::<Address, String>(listener.address().clone()))
        .is_err()
    {
        return;
    }
    drop(ready);
    let _ = serve_on(&Arc::new(listener));
}

/// Serves clients of `listener` until told to shut down (which ends the process, as Python's
/// `serve_forever` does) or the listener fails.
///
/// Each connection is handshaken on a thread of its own, within the listener's handshake
/// timeout, so a client that connects and says nothing holds up no other; at most
/// [`HALF_OPEN`] connections wait for their handshake at once (more are closed at once).
pub(crate) fn serve_on(listener: &Arc<Listener>) -> Error {
    let half_open = Arc::new(AtomicU64::new(0));
    let state = Arc::new(State::default());
    loop {
        let conn = match listener.accept_unauthenticated() {
            Ok(conn) => conn,
            // A client that hung up at once: the server goes on.
            Err(Error::Eof | Error::Io { .. }) => continue,
            Err(e) => return e,
        };
        if half_open.fetch_add(1, Ordering::SeqCst) >= HALF_OPEN {
            half_open.fetch_sub(1, Ordering::SeqCst);
            continue; // closed
        }
        let (state, listener, waiting) = (
            Arc::clone(&state),
            Arc::clone(listener),
            Arc::clone(&half_open),
        );
        let started = std::thread::Builder::new()
            .name("manager-client".into())
            .spawn(move || {
                // A wrong key, a client that hangs up or says nothing in time: refused.
                let welcome = listener.authenticate(&conn);
                waiting.fetch_sub(1, Ordering::SeqCst);
                if welcome.is_ok() {
                    static CLIENTS: AtomicU64 = AtomicU64::new(0);
                    let client = CLIENTS.fetch_add(1, Ordering::Relaxed) + 1;
                    answer(&conn, &state, client);
                    state.forget(client);
                }
            });
        if started.is_err() {
            half_open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The most connections a manager holds before their handshake.
const HALF_OPEN: u64 = 4096;

/// Answers one client's requests in order until it hangs up, or sends what is not a request.
/// A CPython manager client (it pickles its requests) is told, in a reply it can read, that
/// this is not a CPython manager.
fn answer(conn: &Connection, state: &State, client: u64) {
    loop {
        let request = match super::recv_soon::<Request>(conn) {
            Ok(request) => request,
            Err(Error::Codec(why)) if why.contains(crate::wire::LOOKS_LIKE_PICKLE) => {
                let refusal = crate::wire::pickled_pair(
                    "#TRACEBACK",
                    "this server is a multiprocess (Rust) manager: it speaks its own protocol, \
                     not CPython's; connect with multiprocess::Manager::connect",
                );
                let _ = conn.send_bytes(&refusal);
                return;
            }
            Err(_) => return,
        };
        if let Request::Shutdown = request {
            let _ = conn.send(&Reply::Done);
            crate::exit(0);
        }
        // A client that hangs up while its call waits (its process died) must not take an
        // item or a lock that nobody will ever see.
        let gone = || conn.poll(Some(Duration::ZERO)).unwrap_or(true);
        let Some(reply) = state.apply(request, client, &gone) else {
            return;
        };
        if conn.send(&reply).is_err() {
            return;
        }
    }
}

/// A dict that keeps insertion order (deleted slots are compacted away when they pile up).
#[derive(Default)]
struct Dict {
    entries: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    index: HashMap<Vec<u8>, usize>,
}

impl Dict {
    fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        let i = *self.index.get(key)?;
        self.entries[i].as_ref().map(|(_, v)| v)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i] = Some((key, value)),
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(Some((key, value)));
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries[i].take()?;
        if self.entries.len() > 2 * self.index.len() + 8 {
            self.entries.retain(Option::is_some);
            for (i, (k, _)) in self.entries.iter().flatten().enumerate() {
                self.index.insert(k.clone(), i);
            }
        }
        Some(value)
    }

    fn items(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.entries.iter().flatten()
    }
}

enum Object {
    Dict(Dict),
    List(Vec<Vec<u8>>),
    Value(Vec<u8>),
    /// The items, and how many were put and not yet marked done (`task_done`).
    Queue(VecDeque<Vec<u8>>, u64),
    /// The client holding it, if held.
    Lock(Option<u64>),
    /// The client holding it, and how many times.
    RLock(Option<u64>, u32),
    /// The counter, and its bound for a bounded one.
    Semaphore(u32, Option<u32>),
    /// Whether it is set.
    Event(bool),
    Barrier(Barrier),
    Condition(Condition),
    /// An object of the program's own type: its entry point and where it lives.
    Custom(crate::sys::image::Trampoline, super::custom::Slot),
    /// A pool, and its number of workers.
    Pool(Arc<crate::Pool>, usize),
    /// A job started on a pool.
    Pending(Arc<crate::AsyncResult<crate::pool::RemoteOutcomes>>),
}

/// A condition over its own re-entrant lock: the holder and its depth, the tickets of the
/// clients waiting in `wait` (oldest first), and those of them notified.
#[derive(Default)]
struct Condition {
    holder: Option<u64>,
    depth: u32,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    notified: Vec<u64>,
}

/// A barrier's state: `waiting` of `parties` have arrived in the current `generation`;
/// `resets` counts `reset()` calls (a waiter that sees it change gets the barrier broken).
struct Barrier {
    parties: u32,
    waiting: u32,
    generation: u64,
    resets: u64,
    broken: bool,
}

impl Object {
    fn new(kind: Kind, initial: Option<Bytes>) -> Object {
        match kind {
            Kind::Dict => Object::Dict(Dict::default()),
            // An array's items (encoded each, in one encoded list).
            Kind::List => Object::List(
                initial
                    .and_then(|b| crate::wire::decode::<Vec<Bytes>>(&b.0).ok())
                    .map(|items| items.into_iter().map(|b| b.0).collect())
                    .unwrap_or_default(),
            ),
            Kind::Value => Object::Value(initial.map(|b| b.0).unwrap_or_default()),
            Kind::Queue => Object::Queue(VecDeque::new(), 0),
            Kind::Lock => Object::Lock(None),
            Kind::RLock => Object::RLock(None, 0),
            Kind::Semaphore(value, bound) => Object::Semaphore(value, bound),
            Kind::Condition => Object::Condition(Condition::default()),
            Kind::Barrier(parties) => Object::Barrier(Barrier {
                parties,
                waiting: 0,
                generation: 0,
                resets: 0,
                broken: false,
            }),
            Kind::Event => Object::Event(false),
        }
    }
}

/// The objects, and who refers to them. An object made by `Create` starts with one reference
/// (the creating proxy's); every proxy that decodes it adds one, every process letting go of
/// its proxy removes one, and at zero the object goes. A proxy on its way to another process
/// holds a lease (a reference the receiver takes over when it decodes the proxy, so the sender
/// may let go at once). Objects shared by name, and objects whose proxies were stored inside
/// other managed objects (whose bytes the manager never reads), are pinned: they stay until
/// shutdown.
#[derive(Default)]
struct Objects {
    next: u64,
    table: HashMap<u64, Object>,
    names: HashMap<String, u64>,
    refs: HashMap<u64, u64>,
    pinned: std::collections::HashSet<u64>,
    leases: HashMap<u64, u64>,
    next_lease: u64,
}

impl Objects {
    fn insert(&mut self, object: Object) -> u64 {
        self.next += 1;
        self.table.insert(self.next, object);
        self.refs.insert(self.next, 1);
        self.next
    }

    fn gone(id: u64) -> Reply {
        remote(
            "KeyError",
            format!("no object with id {id} (it was released)"),
        )
    }

    /// One more reference to `id`: taken over from lease `token` if it is still out, new
    /// otherwise.
    fn incref(&mut self, id: u64, token: u64) -> Reply {
        if !self.table.contains_key(&id) {
            return Self::gone(id);
        }
        if token != 0 && self.leases.get(&token) == Some(&id) {
            self.leases.remove(&token);
        } else {
            *self.refs.entry(id).or_insert(0) += 1;
        }
        Reply::Done
    }

    /// A reference on its way to another process.
    fn lease(&mut self, id: u64) -> Reply {
        if !self.table.contains_key(&id) {
            return Self::gone(id);
        }
        *self.refs.entry(id).or_insert(0) += 1;
        self.next_lease += 1;
        self.leases.insert(self.next_lease, id);
        Reply::Id(self.next_lease)
    }

    /// One reference fewer to each of `ids`; an object left with none goes (unless pinned).
    /// Returns the objects that went: the caller drops them once it has let go of the lock
    /// (an object of the program's own type may hold proxies of this manager, whose drop
    /// calls back here; a pool's drop waits for its workers).
    fn decref(&mut self, ids: &[u64]) -> Vec<Object> {
        let mut removed = Vec::new();
        for id in ids {
            let Some(n) = self.refs.get_mut(id) else {
                continue;
            };
            *n = n.saturating_sub(1);
            if *n == 0 && !self.pinned.contains(id) {
                self.refs.remove(id);
                removed.extend(self.table.remove(id));
            }
        }
        removed
    }
}

/// How often a waiting call looks whether its client hung up.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    objects: Mutex<Objects>,
    /// Signalled whenever something a waiter may wait for happens (an item put on a queue, a
    /// lock released, an event set).
    changed: Condvar,
}

fn remote(kind: &str, message: impl Into<String>) -> Reply {
    Reply::Err(kind.to_string(), message.into())
}

/// Python's index rules: negative counts from the end; `None` when out of range.
fn position(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

impl State {
    /// Waits for a change, up to `deadline`, and at most [`CLIENT_CHECK`] (so that the caller
    /// can look whether its client is still there).
    fn pause<'a>(
        &self,
        objects: std::sync::MutexGuard<'a, Objects>,
        deadline: Option<Instant>,
    ) -> std::sync::MutexGuard<'a, Objects> {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = left.map_or(CLIENT_CHECK, |l| {
            l.clamp(Duration::from_millis(1), CLIENT_CHECK)
        });
        self.changed
            .wait_timeout(objects, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Releases the locks that `client` held (it hung up).
    fn forget(&self, client: u64) {
        let mut objects = lock(&self.objects);
        for object in objects.table.values_mut() {
            match object {
                Object::Condition(c) if c.holder == Some(client) => {
                    c.holder = None;
                    c.depth = 0;
                }
                Object::Lock(holder) if *holder == Some(client) => *holder = None,
                Object::RLock(holder, count) if *holder == Some(client) => {
                    *holder = None;
                    *count = 0;
                }
                _ => {}
            }
        }
        self.changed.notify_all();
    }

    /// The reply to `request` from `client`; `None` if the client hung up (`gone()`) while
    /// its call waited.
    fn apply(&self, request: Request, client: u64, gone: &dyn Fn() -> bool) -> Option<Reply> {
        let mut objects = lock(&self.objects);
        Some(match request {
            Request::Create(kind, initial) => Reply::Id(objects.insert(Object::new(kind, initial))),
            Request::CreateCustom(code, initial) => {
                // Decoding the value may decode proxies of this manager, which call back here.
                drop(objects);
                let created = super::custom::create(code, initial);
                objects = lock(&self.objects);
                match created {
                    Ok((entry, slot)) => Reply::Id(objects.insert(Object::Custom(entry, slot))),
                    Err(reply) => reply,
                }
            }
            Request::Call(id, op @ (Op::Custom(_) | Op::GetValue)) => {
                let Some(Object::Custom(entry, slot)) = objects.table.get(&id) else {
                    return Some(remote(
                        "TypeError",
                        format!("object {id} is not of the program's own type"),
                    ));
                };
                // One call at a time per object, but not holding up the other objects.
                let (entry, slot) = (*entry, std::sync::Arc::clone(slot));
                drop(objects);
                return Some(super::custom::apply(entry, &slot, op));
            }
            Request::Named(name, kind) => {
                if let Some(&id) = objects.names.get(&name) {
                    return Some(match objects.table.get(&id) {
                        Some(o) if Object::new(kind, None).same_kind(o) => Reply::Id(id),
                        _ => remote(
                            "TypeError",
                            format!("{name:?} names an object of another kind"),
                        ),
                    });
                }
                let id = objects.insert(Object::new(kind, None));
                objects.names.insert(name, id);
                objects.pinned.insert(id);
                Reply::Id(id)
            }
            Request::IncRef(id, token) => objects.incref(id, token),
            Request::AddRefs(ids) => {
                for id in ids {
                    if let Some(n) = objects.refs.get_mut(&id) {
                        *n += 1;
                    }
                }
                Reply::Done
            }
            Request::Lease(id) => objects.lease(id),
            Request::Pin(id) => match objects.table.contains_key(&id) {
                true => {
                    objects.pinned.insert(id);
                    Reply::Done
                }
                false => Objects::gone(id),
            },
            Request::DecRef(ids) => {
                let removed = objects.decref(&ids);
                drop(objects);
                if !removed.is_empty() {
                    // Whoever waits on a released object learns it is gone.
                    self.changed.notify_all();
                }
                drop(removed);
                return Some(Reply::Done);
            }
            Request::Count => Reply::Len(objects.table.len() as u64),
            Request::CreatePool(processes) => {
                // Its workers are this (daemonic) process's children: they die with it.
                crate::process::allow_daemonic_workers();
                let size = processes.map_or_else(crate::cpu_count, |n| n as usize);
                drop(objects);
                let pool = crate::Pool::builder().processes(size).build();
                objects = lock(&self.objects);
                match pool {
                    Ok(pool) => Reply::Id(objects.insert(Object::Pool(Arc::new(pool), size))),
                    Err(e) => remote("RuntimeError", e.to_string()),
                }
            }
            Request::Call(id, Op::PoolStart(job)) => {
                let Some(Object::Pool(pool, _)) = objects.table.get(&id) else {
                    return Some(remote("TypeError", format!("object {id} is not a pool")));
                };
                match pool.start_remote(job) {
                    Ok(result) => Reply::Id(objects.insert(Object::Pending(Arc::new(result)))),
                    Err(e) => remote("ValueError", e.to_string()),
                }
            }
            Request::Call(
                id,
                op @ (Op::PoolRun(_) | Op::PoolClose | Op::PoolTerminate | Op::PoolJoin),
            ) => {
                let Some(Object::Pool(pool, _)) = objects.table.get(&id) else {
                    return Some(remote("TypeError", format!("object {id} is not a pool")));
                };
                // The pool's work does not hold up the other objects.
                let pool = Arc::clone(pool);
                drop(objects);
                return Some(pool_call(&pool, op));
            }
            Request::Call(
                id,
                op @ (Op::ResultGet(_) | Op::ResultWait(_) | Op::ResultChunk(..)),
            ) => {
                let Some(Object::Pending(result)) = objects.table.get(&id) else {
                    return Some(remote("TypeError", format!("object {id} is not a result")));
                };
                let result = Arc::clone(result);
                drop(objects);
                let limit = |s: Option<f64>| s.map(|s| Duration::from_secs_f64(s.max(0.0)));
                return Some(match op {
                    Op::ResultWait(s) => Reply::Bool(result.wait(limit(s))),
                    Op::ResultChunk(i, s) => match result.outcome(i as usize, limit(s)) {
                        Some(o) => Reply::Outcomes(vec![crate::pool::remote_outcome(&o)]),
                        None => remote("TimeoutError", "the result is not ready"),
                    },
                    Op::ResultGet(s) => match result.get(limit(s)) {
                        Ok(outcomes) => Reply::Outcomes(outcomes),
                        Err(Error::Timeout) => remote("TimeoutError", "the result is not ready"),
                        Err(e) => remote("ValueError", e.to_string()),
                    },
                    _ => Reply::Done,
                });
            }
            Request::Call(id, Op::BarrierWait(timeout)) => {
                return self.barrier_wait(objects, id, timeout, gone);
            }
            Request::Call(id, Op::Wait(timeout))
                if matches!(objects.table.get(&id), Some(Object::Condition(_))) =>
            {
                return self.condition_wait(objects, id, client, timeout, gone);
            }
            Request::Call(id, op) => {
                let deadline = match &op {
                    Op::QueueGet(Some(secs))
                    | Op::Acquire(Some(secs))
                    | Op::Wait(Some(secs))
                    | Op::Join(Some(secs)) => {
                        Some(Instant::now() + Duration::from_secs_f64(secs.max(0.0)))
                    }
                    _ => None,
                };
                loop {
                    let Some(object) = objects.table.get_mut(&id) else {
                        return Some(remote("KeyError", format!("no object with id {id}")));
                    };
                    match call(object, &op, client) {
                        Some(reply) => {
                            if matches!(
                                op,
                                Op::QueuePut(_)
                                    | Op::Release
                                    | Op::Set
                                    | Op::TaskDone
                                    | Op::Abort
                                    | Op::Reset
                                    | Op::Notify(_)
                            ) {
                                self.changed.notify_all();
                            }
                            return Some(reply);
                        }
                        // Not yet (an empty queue, a held lock, an unset event): wait for a
                        // change, up to the deadline, looking now and then whether the client
                        // is still there.
                        None => {
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                return Some(match op {
                                    Op::QueueGet(_) => remote("Empty", "the queue is empty"),
                                    _ => Reply::Bool(false),
                                });
                            }
                            objects = self.pause(objects, deadline);
                            if gone() {
                                return None;
                            }
                        }
                    }
                }
            }
            Request::Shutdown => Reply::Done,
        })
    }
}

fn broken_barrier() -> Reply {
    remote("BrokenBarrierError", "the barrier is broken")
}

impl State {
    /// `threading.Barrier.wait`: the caller's arrival index (0 for the first) once all parties
    /// have arrived. A timeout, an abort, a reset, or a waiter whose client hung up breaks the
    /// barrier for everyone waiting (Python's would wait for ever on a dead party).
    fn barrier_wait(
        &self,
        mut objects: std::sync::MutexGuard<'_, Objects>,
        id: u64,
        timeout: Option<f64>,
        gone: &dyn Fn() -> bool,
    ) -> Option<Reply> {
        let deadline = timeout.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let Some(Object::Barrier(b)) = objects.table.get_mut(&id) else {
            return Some(remote("TypeError", format!("object {id} is not a barrier")));
        };
        if b.broken {
            return Some(broken_barrier());
        }
        let (index, generation, resets) = (b.waiting, b.generation, b.resets);
        b.waiting += 1;
        if b.waiting == b.parties {
            b.waiting = 0;
            b.generation += 1;
            self.changed.notify_all();
            return Some(Reply::Len(u64::from(index)));
        }
        loop {
            objects = self.pause(objects, deadline);
            let Some(Object::Barrier(b)) = objects.table.get_mut(&id) else {
                return Some(broken_barrier());
            };
            if b.generation != generation {
                return Some(Reply::Len(u64::from(index)));
            }
            if b.broken || b.resets != resets {
                return Some(broken_barrier());
            }
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            let hung_up = !timed_out && gone();
            if timed_out || hung_up {
                b.broken = true;
                b.waiting = 0;
                self.changed.notify_all();
                return (!hung_up).then(broken_barrier);
            }
        }
    }
}

impl State {
    /// `threading.Condition.wait`: releases the condition's lock (all levels), waits to be
    /// notified or for the timeout, takes the lock back at the same depth; true if notified.
    fn condition_wait(
        &self,
        mut objects: std::sync::MutexGuard<'_, Objects>,
        id: u64,
        client: u64,
        timeout: Option<f64>,
        gone: &dyn Fn() -> bool,
    ) -> Option<Reply> {
        let deadline = timeout.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let Some(Object::Condition(c)) = objects.table.get_mut(&id) else {
            return Some(remote(
                "TypeError",
                format!("object {id} is not a condition"),
            ));
        };
        if c.holder != Some(client) {
            return Some(remote("RuntimeError", "cannot wait on un-acquired lock"));
        }
        let depth = c.depth;
        c.holder = None;
        c.depth = 0;
        c.next_ticket += 1;
        let ticket = c.next_ticket;
        c.waiting.push_back(ticket);
        self.changed.notify_all();
        let mut notified = false;
        loop {
            let Some(Object::Condition(c)) = objects.table.get_mut(&id) else {
                return Some(remote("KeyError", format!("no object with id {id}")));
            };
            if !notified {
                if let Some(at) = c.notified.iter().position(|&t| t == ticket) {
                    c.notified.swap_remove(at);
                    notified = true;
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    c.waiting.retain(|&t| t != ticket);
                    notified = false;
                    // Timed out: from here on only the lock is waited for.
                    c.notified.retain(|&t| t != ticket);
                }
            }
            let done_waiting = notified || deadline.is_some_and(|d| Instant::now() >= d);
            if done_waiting && c.holder.is_none() {
                c.holder = Some(client);
                c.depth = depth;
                return Some(Reply::Bool(notified));
            }
            objects = self.pause(objects, deadline);
            if gone() {
                if let Some(Object::Condition(c)) = objects.table.get_mut(&id) {
                    c.waiting.retain(|&t| t != ticket);
                    c.notified.retain(|&t| t != ticket);
                }
                return None;
            }
        }
    }
}

impl Object {
    fn same_kind(&self, other: &Object) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A pool's operation (run outside the objects' lock).
fn pool_call(pool: &crate::Pool, op: Op) -> Reply {
    let result = match op {
        Op::PoolRun(job) => {
            return match pool.start_remote(job).and_then(|r| r.get(None)) {
                Ok(outcomes) => Reply::Outcomes(outcomes),
                Err(e) => remote("ValueError", e.to_string()),
            };
        }
        Op::PoolClose => {
            pool.close();
            Ok(())
        }
        Op::PoolTerminate => {
            pool.terminate();
            Ok(())
        }
        Op::PoolJoin => pool.join(),
        _ => Ok(()),
    };
    match result {
        Ok(()) => Reply::Done,
        Err(e) => remote("ValueError", e.to_string()),
    }
}

/// Runs `op` for `client` on `object`; `None` when it must wait (a get on an empty queue, an
/// acquire of a held lock, a wait on an unset event).
fn call(object: &mut Object, op: &Op, client: u64) -> Option<Reply> {
    let bytes = |b: &Vec<u8>| Bytes(b.clone());
    Some(match (object, op) {
        (Object::Dict(d), Op::Get(k)) => Reply::Maybe(d.get(&k.0).map(bytes)),
        (Object::Dict(d), Op::GetItem(k)) => match d.get(&k.0) {
            Some(v) => Reply::Bytes(bytes(v)),
            None => remote("KeyError", "no such key"),
        },
        (Object::Dict(d), Op::SetItem(k, v)) => {
            d.set(k.0.clone(), v.0.clone());
            Reply::Done
        }
        (Object::Dict(d), Op::DelItem(k)) => match d.remove(&k.0) {
            Some(_) => Reply::Done,
            None => remote("KeyError", "no such key"),
        },
        (Object::Dict(d), Op::Contains(k)) => Reply::Bool(d.get(&k.0).is_some()),
        (Object::Dict(d), Op::Len) => Reply::Len(d.index.len() as u64),
        (Object::Dict(d), Op::Keys) => Reply::List(d.items().map(|(k, _)| bytes(k)).collect()),
        (Object::Dict(d), Op::Items) => {
            Reply::Pairs(d.items().map(|(k, v)| (bytes(k), bytes(v))).collect())
        }
        (Object::Dict(d), Op::Clear) => {
            *d = Dict::default();
            Reply::Done
        }
        (Object::List(l), Op::Append(v)) => {
            l.push(v.0.clone());
            Reply::Done
        }
        (Object::List(l), Op::Index(i)) => match position(*i, l.len()) {
            Some(i) => Reply::Bytes(bytes(&l[i])),
            None => remote("IndexError", "list index out of range"),
        },
        (Object::List(l), Op::SetIndex(i, v)) => match position(*i, l.len()) {
            Some(i) => {
                l[i] = v.0.clone();
                Reply::Done
            }
            None => remote("IndexError", "list assignment index out of range"),
        },
        (Object::List(l), Op::Pop(i)) => match position(i.unwrap_or(-1), l.len()) {
            Some(i) => Reply::Bytes(Bytes(l.remove(i))),
            None if l.is_empty() => remote("IndexError", "pop from empty list"),
            None => remote("IndexError", "pop index out of range"),
        },
        (Object::List(l), Op::Len) => Reply::Len(l.len() as u64),
        (Object::Pool(_, n), Op::Len) => Reply::Len(*n as u64),
        (Object::List(l), Op::Items) => Reply::List(l.iter().map(bytes).collect()),
        (Object::List(l), Op::Clear) => {
            l.clear();
            Reply::Done
        }
        (Object::Value(v), Op::Load) => Reply::Bytes(bytes(v)),
        (Object::Value(v), Op::Store(new)) => {
            *v = new.0.clone();
            Reply::Done
        }
        (Object::Queue(q, unfinished), Op::QueuePut(v)) => {
            q.push_back(v.0.clone());
            *unfinished += 1;
            Reply::Done
        }
        (Object::Queue(q, _), Op::QueueGet(_)) => Reply::Bytes(Bytes(q.pop_front()?)),
        (Object::Queue(q, _), Op::Len) => Reply::Len(q.len() as u64),
        (Object::Queue(_, unfinished), Op::TaskDone) => match unfinished {
            0 => remote("ValueError", "task_done() called too many times"),
            n => {
                *n -= 1;
                Reply::Done
            }
        },
        (Object::Queue(_, unfinished), Op::Join(_)) => match unfinished {
            0 => Reply::Bool(true),
            _ => return None,
        },
        (Object::Lock(holder), Op::Acquire(_)) => match holder {
            Some(_) => return None,
            None => {
                *holder = Some(client);
                Reply::Bool(true)
            }
        },
        // As `threading.Lock`: any client may release it, once.
        (Object::Lock(holder), Op::Release) => match holder.take() {
            Some(_) => Reply::Done,
            None => remote("RuntimeError", "release unlocked lock"),
        },
        (Object::Lock(holder), Op::Locked) => Reply::Bool(holder.is_some()),
        (Object::RLock(holder, count), Op::Acquire(_)) => match holder {
            Some(h) if *h != client => return None,
            _ => {
                *holder = Some(client);
                *count += 1;
                Reply::Bool(true)
            }
        },
        // As `threading.RLock`: only its holder releases it.
        (Object::RLock(holder, count), Op::Release) => match holder {
            Some(h) if *h == client => {
                *count -= 1;
                if *count == 0 {
                    *holder = None;
                }
                Reply::Done
            }
            _ => remote("RuntimeError", "cannot release un-acquired lock"),
        },
        (Object::RLock(holder, _), Op::Locked) => Reply::Bool(holder.is_some()),
        (Object::Semaphore(value, _), Op::Acquire(_)) => match value {
            0 => return None,
            v => {
                *v -= 1;
                Reply::Bool(true)
            }
        },
        (Object::Semaphore(value, bound), Op::Release) => {
            if Some(*value) == *bound {
                remote("ValueError", "Semaphore released too many times")
            } else {
                *value += 1;
                Reply::Done
            }
        }
        (Object::Semaphore(value, _), Op::Len) => Reply::Len(u64::from(*value)),
        (Object::Event(set), Op::Set) => {
            *set = true;
            Reply::Done
        }
        (Object::Event(set), Op::Clear) => {
            *set = false;
            Reply::Done
        }
        (Object::Event(set), Op::Locked) => Reply::Bool(*set),
        (Object::Condition(c), Op::Acquire(_)) => match c.holder {
            Some(h) if h != client => return None,
            _ => {
                c.holder = Some(client);
                c.depth += 1;
                Reply::Bool(true)
            }
        },
        (Object::Condition(c), Op::Release) => match c.holder {
            Some(h) if h == client => {
                c.depth -= 1;
                if c.depth == 0 {
                    c.holder = None;
                }
                Reply::Done
            }
            _ => remote("RuntimeError", "cannot release un-acquired lock"),
        },
        (Object::Condition(c), Op::Notify(n)) => match c.holder {
            Some(h) if h == client => {
                let n = n.map_or(c.waiting.len(), |n| (n as usize).min(c.waiting.len()));
                let woken: Vec<u64> = c.waiting.drain(..n).collect();
                c.notified.extend(woken);
                Reply::Done
            }
            _ => remote("RuntimeError", "cannot notify on un-acquired lock"),
        },
        (Object::Barrier(b), Op::Abort) => {
            b.broken = true;
            b.waiting = 0;
            Reply::Done
        }
        (Object::Barrier(b), Op::Reset) => {
            b.resets += 1;
            b.broken = false;
            b.waiting = 0;
            Reply::Done
        }
        (Object::Barrier(b), Op::Locked) => Reply::Bool(b.broken),
        (Object::Barrier(b), Op::Len) => Reply::Len(u64::from(b.waiting)),
        (Object::Event(set), Op::Wait(_)) => match set {
            true => Reply::Bool(true),
            false => return None,
        },
        (_, op) => remote(
            "AttributeError",
            format!("this object has no method {:?}", op.name()),
        ),
    })
}
