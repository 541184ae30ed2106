//! The objects a manager holds, as encoded bytes, and the operations on each.

use super::*;

pub(super) enum Object {
    Dict(Dict),
    List(List),
    Value(Vec<u8>),
    Queue(Queue),
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
    Custom(crate::sys::image::Trampoline, crate::managers::custom::Slot),
    /// A pool, and its number of workers.
    Pool(Arc<crate::Pool>, usize),
    /// A job started on a pool.
    Pending(Arc<crate::AsyncResult<crate::pool::RemoteOutcomes>>),
}

/// A queue's items, how many were put and not yet marked done (`task_done`), and how many it
/// may hold (0: no limit).
#[derive(Default)]
pub(super) struct Queue {
    pub(super) items: VecDeque<Blob>,
    pub(super) unfinished: u64,
    pub(super) maxsize: u32,
}

impl Queue {
    fn full(&self) -> bool {
        self.maxsize != 0 && self.items.len() >= self.maxsize as usize
    }
}

/// A condition over its own re-entrant lock: the holder and its depth, the tickets of the
/// clients waiting in `wait` (oldest first), and those of them notified.
#[derive(Default)]
pub(super) struct Condition {
    pub(super) holder: Option<u64>,
    pub(super) depth: u32,
    pub(super) next_ticket: u64,
    pub(super) waiting: VecDeque<u64>,
    pub(super) notified: Vec<u64>,
}

/// A barrier's state: `waiting` of `parties` have arrived in the current `generation`;
/// `resets` counts `reset()` calls (a waiter that sees it change gets the barrier broken).
pub(super) struct Barrier {
    pub(super) parties: u32,
    pub(super) waiting: u32,
    pub(super) generation: u64,
    pub(super) resets: u64,
    pub(super) broken: bool,
}

impl Object {
    pub(super) fn new(kind: Kind, initial: Option<Bytes>) -> Object {
        match kind {
            // The initial entries (encoded each, in one encoded list).
            Kind::Dict => Object::Dict(Dict::from_pairs(
                initial
                    .and_then(|b| crate::wire::decode::<Vec<(Bytes, Bytes)>>(&b.0).ok())
                    .unwrap_or_default(),
            )),
            // A list's or an array's initial items (encoded each, in one encoded list).
            Kind::List => Object::List(List {
                items: initial
                    .and_then(|b| crate::wire::decode::<Vec<Bytes>>(&b.0).ok())
                    .map(|items| items.into_iter().map(|b| b.0).collect())
                    .unwrap_or_default(),
                held: None,
            }),
            Kind::Value => Object::Value(initial.map(|b| b.0).unwrap_or_default()),
            Kind::Queue(maxsize) => Object::Queue(Queue {
                maxsize,
                ..Queue::default()
            }),
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
pub(super) struct Objects {
    pub(super) next: u64,
    pub(super) table: rustc_hash::FxHashMap<u64, Object>,
    pub(super) names: HashMap<String, u64>,
    pub(super) refs: HashMap<u64, u64>,
    pub(super) pinned: std::collections::HashSet<u64>,
    pub(super) leases: HashMap<u64, u64>,
    pub(super) next_lease: u64,
}

impl Objects {
    pub(super) fn insert(&mut self, object: Object) -> u64 {
        self.next += 1;
        self.table.insert(self.next, object);
        self.refs.insert(self.next, 1);
        self.next
    }

    pub(super) fn gone(id: u64) -> Reply {
        remote(
            "KeyError",
            format!("no object with id {id} (it was released)"),
        )
    }

    /// One more reference to `id`: taken over from lease `token` if it is still out, new
    /// otherwise.
    pub(super) fn incref(&mut self, id: u64, token: u64) -> Reply {
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
    pub(super) fn lease(&mut self, id: u64) -> Reply {
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
    pub(super) fn decref(&mut self, ids: &[u64]) -> Vec<Object> {
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

impl Object {
    pub(super) fn same_kind(&self, other: &Object) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A pool's operation (run outside the objects' lock).
pub(super) fn pool_call(pool: &crate::Pool, op: Op) -> Reply {
    let result = match op {
        Op::PoolRun(job) => {
            return match pool.start_remote(job).and_then(|r| r.get()) {
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
        Op::PoolJoin(None) => pool.join(),
        Op::PoolJoin(Some(secs)) => {
            // A limit too large to hold is none (see `wait_limit`).
            let joined = match super::wait_limit(secs) {
                Some(limit) => pool.join_timeout(limit),
                None => pool.join().map(|()| true),
            };
            return match joined {
                Ok(ended) => Reply::Bool(ended),
                Err(e) => remote("ValueError", e.to_string()),
            };
        }
        _ => Ok(()),
    };
    match result {
        Ok(()) => Reply::Done,
        Err(e) => remote("ValueError", e.to_string()),
    }
}

/// Runs `op` for `client` on `object`; `None` when it must wait (a get on an empty queue, an
/// acquire of a held lock, a wait on an unset event).
pub(super) fn call(object: &mut Object, op: &mut Op, client: u64) -> Option<Reply> {
    Some(match (object, op) {
        (Object::Dict(d), op) => dict_call(d, op),
        (Object::List(l), op) => return list_call(l, op, client),
        (Object::Pool(_, n), Op::Len) => Reply::Len(*n as u64),
        (Object::Value(v), Op::Load) => Reply::Bytes(Blob::from(&v[..])),
        (Object::Value(v), Op::Store(new)) => {
            store(v, std::mem::take(new));
            Reply::Done
        }
        (Object::Queue(q), Op::QueuePut(v, _)) => {
            if q.full() {
                return None;
            }
            q.items.push_back(std::mem::take(v));
            q.unfinished += 1;
            Reply::Done
        }
        (Object::Queue(q), Op::QueueGet(_)) => Reply::Bytes(q.items.pop_front()?),
        (Object::Queue(q), Op::Len) => Reply::Len(q.items.len() as u64),
        (Object::Queue(q), Op::Full) => Reply::Bool(q.full()),
        (Object::Queue(q), Op::MaxSize) => Reply::Len(u64::from(q.maxsize)),
        (Object::Queue(Queue { unfinished, .. }), Op::TaskDone) => match unfinished {
            0 => remote("ValueError", "task_done() called too many times"),
            n => {
                *n -= 1;
                Reply::Done
            }
        },
        (Object::Queue(Queue { unfinished, .. }), Op::Join(_)) => match unfinished {
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
        (Object::Barrier(b), Op::Parties) => Reply::Len(u64::from(b.parties)),
        (Object::Event(set), Op::Wait(_)) => match set {
            true => Reply::Bool(true),
            false => return None,
        },
        (_, op) => no_method(op),
    })
}
