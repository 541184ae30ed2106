//! The manager's server process: a [`Listener`] whose every accepted connection gets a thread
//! that answers [`Request`]s on the objects this process holds.
//!
//! Objects are kept as encoded bytes (the server never needs their Rust types): a dict maps
//! encoded keys to encoded values, in insertion order as Python's does; a list and a queue hold
//! encoded items. One lock guards them all, with one condition variable for whoever waits
//! (a queue reader, a lock acquirer, an event waiter). A lock held by a client that hangs up
//! is kept held, as Python keeps it, if the client said it closes in order
//! ([`Request::Closing`]: its last proxy went) or its process said it exits normally
//! ([`Request::Leaving`], from its exit hooks); otherwise (its process died) it is released,
//! where Python's stays locked forever.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Blob, Kind, Op, Reply, Request, Rings};
use crate::connection::{Address, Connection, Listener};
use crate::error::Error;
use crate::log::{self, Level};
use crate::process::lock;
use crate::wire::Bytes;

mod lists;
mod objects;
mod waits;

use lists::*;
use objects::*;

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
    let at = format!("{:?}", listener.address());
    log::event!(Level::Info, { address = at }, "manager serving at {at}");
    let _ = serve_on(&Arc::new(listener));
    log::event!(Level::Info, {}, "manager shutting down");
}

/// The target of a manager's process with an initializer: runs `f(args)` first (reporting a
/// panic on `ready`), then [`serve`]s.
pub(crate) fn serve_with<F, A>(
    ready: Connection,
    address: Option<Address>,
    authkey: Vec<u8>,
    args: A,
) where
    F: crate::registry::Target<A, ()>,
{
    let f = crate::sys::image::conjure::<F>();
    if let Err(message) = crate::panics::catch_quietly(|| f.call(args)) {
        let why = format!("its initializer panicked: {message}");
        let _ = ready.send(&Err::<Address, String>(why));
        return;
    }
    serve(ready, address, authkey);
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
/// this is not a CPython manager. A client on this machine hands over rings
/// ([`Request::Rings`]): its later requests, and their replies, go through them.
fn answer(conn: &Connection, state: &State, client: u64) {
    let mut rings: Option<Rings> = None;
    loop {
        let request = match &rings {
            Some(r) => match r.server(conn).recv::<Request>(None) {
                Ok(request) => request,
                Err(_) => return,
            },
            None => match super::recv_soon::<Request>(conn) {
                Ok(request) => request,
                Err(Error::Codec(why)) if why.contains(crate::wire::LOOKS_LIKE_PICKLE) => {
                    let refusal = crate::wire::pickled_pair(
                        "#TRACEBACK",
                        "this server is a multiprocess (Rust) manager: it speaks its own \
                         protocol, not CPython's; connect with multiprocess::Manager::connect",
                    );
                    let _ = conn.send_bytes(&refusal);
                    return;
                }
                Err(_) => return,
            },
        };
        let send = |reply: &Reply| match &rings {
            Some(r) => r.server(conn).send(reply, None).is_ok(),
            None => conn.send(reply).is_ok(),
        };
        match request {
            Request::Rings(mut offered) => {
                // Once per connection; the reply goes on the socket, where it was asked.
                if rings.is_some() || conn.send(&Reply::Done).is_err() {
                    return;
                }
                offered.close_handles();
                rings = Some(offered);
                continue;
            }
            Request::Shutdown => {
                send(&Reply::Done);
                crate::exit(0);
            }
            Request::Hello(token) => {
                lock(&state.sessions).of_client.insert(client, token);
                if !send(&Reply::Done) {
                    return;
                }
                continue;
            }
            Request::Closing => {
                lock(&state.sessions).closing.insert(client);
                continue;
            }
            Request::Leaving => {
                let mut sessions = lock(&state.sessions);
                if let Some(&token) = sessions.of_client.get(&client) {
                    sessions.left.insert(token);
                }
                drop(sessions);
                if !send(&Reply::Done) {
                    return;
                }
                continue;
            }
            _ => {}
        }
        // A client that hangs up while its call waits (its process died) must not take an
        // item or a lock that nobody will ever see. (With rings too, the socket is where a
        // client's death shows: it sends nothing there while it waits for a reply.)
        let gone = || conn.poll(Some(Duration::ZERO)).unwrap_or(true);
        let Some(reply) = state.apply(request, client, &gone) else {
            return;
        };
        if !send(&reply) {
            return;
        }
    }
}

/// How often a waiting call looks whether its client hung up.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

/// Which process each client connection belongs to, and which processes said they exit
/// normally.
#[derive(Default)]
struct Sessions {
    /// Client number → its process's token ([`Request::Hello`]).
    of_client: HashMap<u64, u64>,
    /// The tokens of processes that exit normally ([`Request::Leaving`]), until their last
    /// connection closes.
    left: HashSet<u64>,
    /// Clients that said their connection closes in order ([`Request::Closing`]).
    closing: HashSet<u64>,
}

/// The holder of a lock kept held after its holder's process exited normally: no client (they
/// are numbered from 1), so no hang-up releases it; a `Lock` is still released by anyone's
/// `release`, an `RLock` or `Condition` never again (as Python's).
const EXITED_HOLDER: u64 = 0;

#[derive(Default)]
struct State {
    pub(super) objects: Mutex<Objects>,
    sessions: Mutex<Sessions>,
    /// Signalled whenever something a waiter may wait for happens (an item put on a queue, a
    /// lock released, an event set).
    pub(super) changed: Condvar,
    /// Calls asleep on `changed` (counted under the objects' lock): a change with nobody
    /// waiting makes no system call.
    sleepers: AtomicU64,
}

/// How long a client asks a wait to last, from its seconds: NaN or negative is no time, more
/// than a `Duration` holds is for ever (`None`). A client's number never panics the server.
fn wait_limit(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs.max(0.0)).ok()
}

/// The deadline of a client's wait of `secs` seconds from now (`None`: for ever; see
/// [`wait_limit`]).
fn deadline_in(secs: f64) -> Option<Instant> {
    wait_limit(secs).and_then(crate::sys::deadline_after)
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
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let objects = self
            .changed
            .wait_timeout(objects, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        objects
    }

    /// Wakes the calls waiting for a change, if any; only with the objects' lock held (which
    /// orders the count).
    pub(super) fn notify(&self) {
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.changed.notify_all();
        }
    }

    /// `client` hung up: the locks it held are released, or kept held (by
    /// [`EXITED_HOLDER`]) if its process said it exits normally.
    fn forget(&self, client: u64) {
        let exited_normally = {
            let mut sessions = lock(&self.sessions);
            let token = sessions.of_client.remove(&client);
            let left = sessions.closing.remove(&client)
                || token.is_some_and(|t| sessions.left.contains(&t));
            if let Some(t) = token {
                if !sessions.of_client.values().any(|&other| other == t) {
                    sessions.left.remove(&t);
                }
            }
            left
        };
        let after = exited_normally.then_some(EXITED_HOLDER);
        let mut objects = lock(&self.objects);
        for object in objects.table.values_mut() {
            match object {
                Object::Condition(c) if c.holder == Some(client) => {
                    c.holder = after;
                    if after.is_none() {
                        c.depth = 0;
                    }
                }
                Object::Lock(holder) if *holder == Some(client) => *holder = after,
                Object::RLock(holder, count) if *holder == Some(client) => {
                    *holder = after;
                    if after.is_none() {
                        *count = 0;
                    }
                }
                // A sort that will never finish.
                Object::List(l) if l.held == Some(client) => l.held = None,
                _ => {}
            }
        }
        self.notify();
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
                let created = crate::managers::custom::create(code, initial);
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
                return Some(crate::managers::custom::apply(entry, slot, op));
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
                op @ (Op::PoolRun(_) | Op::PoolClose | Op::PoolTerminate | Op::PoolJoin(_)),
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
                op @ (Op::ResultGet(_)
                | Op::ResultWait(_)
                | Op::ResultChunk(..)
                | Op::ResultNext(_)),
            ) => {
                let Some(Object::Pending(result)) = objects.table.get(&id) else {
                    return Some(remote("TypeError", format!("object {id} is not a result")));
                };
                let result = Arc::clone(result);
                drop(objects);
                // `None`: for ever (no limit asked, or one too large to hold).
                let limit = |s: Option<f64>| s.and_then(wait_limit);
                return Some(match op {
                    Op::ResultWait(s) => Reply::Bool(result.wait_until(limit(s))),
                    Op::ResultChunk(i, s) => match result.outcome(i as usize, limit(s)) {
                        Some(o) => Reply::Outcomes(vec![crate::pool::remote_outcome(&o)]),
                        None => remote("TimeoutError", "the result is not ready"),
                    },
                    Op::ResultNext(s) => match result.next_finished(limit(s)) {
                        Ok(Some(o)) => Reply::Outcomes(vec![crate::pool::remote_outcome(&o)]),
                        Ok(None) => Reply::Done,
                        Err(()) => remote("TimeoutError", "no result is ready"),
                    },
                    Op::ResultGet(s) => match result.get_until(limit(s)) {
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
            Request::Call(id, mut op) => {
                let deadline = match &op {
                    Op::QueueGet(Some(secs))
                    | Op::QueuePut(_, Some(secs))
                    | Op::Acquire(Some(secs))
                    | Op::Wait(Some(secs))
                    | Op::Join(Some(secs)) => deadline_in(*secs),
                    _ => None,
                };
                loop {
                    let Some(object) = objects.table.get_mut(&id) else {
                        return Some(remote("KeyError", format!("no object with id {id}")));
                    };
                    match call(object, &mut op, client) {
                        Some(reply) => {
                            if matches!(
                                op,
                                Op::QueuePut(..)
                                    | Op::QueueGet(_)
                                    | Op::Permute(_)
                                    | Op::Unhold
                                    | Op::Release
                                    | Op::Set
                                    | Op::TaskDone
                                    | Op::Abort
                                    | Op::Reset
                                    | Op::Notify(_)
                            ) {
                                self.notify();
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
                                    Op::QueuePut(..) => remote("Full", "the queue is full"),
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
            Request::Shutdown
            | Request::Hello(_)
            | Request::Leaving
            | Request::Closing
            | Request::Rings(_) => Reply::Done,
        })
    }
}
