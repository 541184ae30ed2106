//! References to a manager's objects, counted as Python counts them: one per process and
//! object, given back when the last proxy goes or the process exits, taken again for a forked
//! child; how a reference travels inside a message.

use super::*;

/// One process's reference to an object in a manager, shared by every clone of the proxies
/// made from it in this process. The manager counts references (Python's `incref`/`decref`):
/// this one is given back when its last clone is dropped, or when the process exits
/// ([`release_all`]), and the object goes when no process refers to it.
#[derive(Debug)]
pub(crate) struct Ref {
    pub(super) client: Arc<Client>,
    pub(super) id: u64,
    /// The process that holds the reference (a forked child adopts its copies).
    pub(super) holder: AtomicU32,
    /// Given back already.
    pub(super) released: AtomicBool,
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
pub(super) static LIVE: ForkLock<Vec<Weak<Ref>>> = ForkLock::new(Vec::new);

/// The reference every proxy holds: which manager, which object.
#[derive(Debug, Clone)]
pub(super) struct Handle(pub(super) Arc<Ref>);

impl std::ops::Deref for Handle {
    type Target = Ref;
    fn deref(&self) -> &Ref {
        &self.0
    }
}

impl Handle {
    /// A proxy's handle for a reference to `id` this process now holds.
    pub(super) fn new(client: Arc<Client>, id: u64) -> Handle {
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
pub(super) fn held_here() -> Vec<(Arc<Client>, Vec<Arc<Ref>>)> {
    let me = crate::sys::current_pid();
    let live: Vec<Arc<Ref>> = lock(LIVE.get()).iter().filter_map(Weak::upgrade).collect();
    by_manager(
        live.into_iter().filter(|r| {
            r.holder.load(Ordering::Relaxed) == me && !r.released.load(Ordering::Relaxed)
        }),
    )
}

/// `refs` grouped by the manager they refer to (one request per manager).
pub(super) fn by_manager(
    refs: impl Iterator<Item = Arc<Ref>>,
) -> Vec<(Arc<Client>, Vec<Arc<Ref>>)> {
    let mut groups: Vec<(Arc<Client>, Vec<Arc<Ref>>)> = Vec::new();
    for r in refs {
        match groups.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &r.client)) {
            Some((_, refs)) => refs.push(r),
            None => groups.push((Arc::clone(&r.client), vec![r])),
        }
    }
    groups
}

/// At exit (Python's finalizers): tells each manager this process exits normally (so that the
/// locks it holds stay held, as Python's do), then gives back every reference it holds.
pub(super) fn release_all() {
    for (client, refs) in held_here() {
        let _ = client.call(&Request::Leaving);
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
pub(super) static FORK_HOOK: crate::process::start::ForkHook = crate::process::start::ForkHook {
    before: Some(|| {
        let held = hold_for_child();
        HELD.with(|h| *h.borrow_mut() = held);
    }),
    in_child: Some(|| adopt(&HELD.with(|h| std::mem::take(&mut *h.borrow_mut())))),
    in_parent: Some(|forked| {
        let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
        if !forked {
            give_back(held);
        }
    }),
    released: &[],
};

thread_local! {
    /// What [`FORK_HOOK`]'s `before` took for the child, on the thread that forks.
    static HELD: std::cell::RefCell<Vec<Arc<Ref>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Before a fork: takes one more reference to every object this process refers to, for the
/// child, which [`adopt`]s its copies (Python increfs after a fork). Returns them, for
/// [`adopt`] in the child, or [`give_back`] if the fork failed.
pub(super) fn hold_for_child() -> Vec<Arc<Ref>> {
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
pub(super) fn adopt(held: &[Arc<Ref>]) {
    let me = crate::sys::current_pid();
    for r in held {
        r.holder.store(me, Ordering::Relaxed);
    }
    LIVE.reset(held.iter().map(Arc::downgrade).collect());
}

/// After a failed fork: gives back what [`hold_for_child`] took.
pub(super) fn give_back(held: Vec<Arc<Ref>>) {
    for (client, refs) in by_manager(held.into_iter()) {
        let _ = client.call(&Request::DecRef(refs.iter().map(|r| r.id).collect()));
    }
}

impl Handle {
    pub(super) fn call(&self, op: Op) -> Result<Reply> {
        self.client.call(&Request::Call(self.id, op))
    }

    pub(super) fn done(&self, op: Op) -> Result<()> {
        match self.call(op)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn flag(&self, op: Op) -> Result<bool> {
        match self.call(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// A lock's or semaphore's acquire: with `block`, waits up to `timeout`; without, once.
    pub(super) fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        let wait = if block { secs(timeout) } else { Some(0.0) };
        self.flag(Op::Acquire(wait))
    }

    pub(super) fn len(&self) -> Result<usize> {
        self.len_of(Op::Len).map(|n| n as usize)
    }

    /// An operation whose answer is a number.
    pub(super) fn len_of(&self, op: Op) -> Result<u64> {
        match self.call(op)? {
            Reply::Len(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn value<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        match self.call(op)? {
            Reply::Bytes(b) => wire::decode(&b.0),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn list<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
        match self.call(op)? {
            Reply::List(items) => items.iter().map(|b| wire::decode(&b.0)).collect(),
            other => Err(unexpected(other)),
        }
    }
}

thread_local! {
    /// Set while a value is encoded to be stored in a manager (an argument of a proxy call).
    pub(super) static INTO_MANAGER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while a value is written as its Python repr (see `repr`): a proxy inside it is
    /// then written as its type and id, asking the manager nothing.
    pub(super) static IN_REPR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a value is being written as its Python repr.
pub(super) fn in_repr() -> bool {
    IN_REPR.with(std::cell::Cell::get)
}

/// A proxy travels as its manager's address, its object's id and a lease: a reference the
/// manager keeps for the receiver, which takes it over when it decodes the proxy, so that the
/// sender may drop its own at once (a proxy never decoded keeps its object until shutdown).
/// A proxy stored inside another managed object pins its object instead (the manager never
/// reads the bytes it stores, so it cannot know when that copy goes). The receiving copy
/// connects with its own process's `authkey`, and bounds its calls as the sender's did.
impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if in_repr() {
            return s.serialize_u64(self.id);
        }
        let token = if INTO_MANAGER.with(std::cell::Cell::get) {
            match self.client.call(&Request::Pin(self.id)) {
                Ok(Reply::Done) => 0,
                Ok(other) => return Err(crate::wire::custom_ser(unexpected(other).to_string())),
                Err(e) => return Err(crate::wire::custom_ser(e.to_string())),
            }
        } else {
            match self.client.call(&Request::Lease(self.id)) {
                Ok(Reply::Id(token)) => token,
                Ok(other) => return Err(crate::wire::custom_ser(unexpected(other).to_string())),
                Err(e) => return Err(crate::wire::custom_ser(e.to_string())),
            }
        };
        (
            &self.client.address,
            self.id,
            token,
            self.client.timeout_nanos(),
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (address, id, token, timeout) = <(Address, u64, u64, u64)>::deserialize(d)?;
        let client = Client::new(address, current_process().authkey().to_vec());
        client.set_timeout_nanos(timeout);
        match client.call(&Request::IncRef(id, token)) {
            Ok(Reply::Done) => Ok(Handle::new(client, id)),
            Ok(other) => Err(crate::wire::custom_de(unexpected(other).to_string())),
            Err(e) => Err(crate::wire::custom_de(format!(
                "a proxy could not reach its manager at {:?}: {e}",
                client.address
            ))),
        }
    }
}

/// Encodes an argument of a proxy call (stored in the manager, or compared with what it
/// stores).
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Blob> {
    let was = INTO_MANAGER.with(|f| f.replace(true));
    let encoded = wire::encode_into(value, smallvec::SmallVec::new());
    INTO_MANAGER.with(|f| f.set(was));
    encoded.map(Blob)
}
