//! Objects of the program's own types in a manager (Python's `BaseManager.register(typeid,
//! callable)` and the `AutoProxy` of its instances).
//!
//! The manager runs this same executable, so it can hold a value of the type itself and call
//! its code: a client sends the code offset of [`entry`]`::<T>` (sealed to this build, as a
//! process target is), and the manager keeps the decoded value and that entry point. Every
//! later call goes through the entry point, which finds the object in a slot the manager hands
//! it on the calling thread.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Blob;
use super::{Handle, Op, Reply, unexpected};
use crate::error::{Error, Result};
use crate::process::lock;
use crate::registry::Code;
use crate::sys::image;
use crate::wire::{self, Bytes};

/// A type whose values a [`Manager`](super::Manager) can hold, called by clients through a
/// [`Proxy`]: Python's `register('Counter', Counter)` and the proxy of a `Counter`.
///
/// A call is a value of [`Call`](Managed::Call) (an enum of the "methods", typically) and its
/// answer one of [`Reply`](Managed::Reply); the manager runs [`handle`](Managed::handle) on its
/// own copy of the object, one call at a time per object. The manager process must run the
/// same build of the program as the client (it is this program, unless it was started by
/// another one and reached with `connect`; then creating the object is refused).
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// use multiprocess::managers::Managed;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { total: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterCall { Add(i64), Total }
///
/// impl Managed for Counter {
///     type Call = CounterCall;
///     type Reply = i64;
///     fn handle(&mut self, call: CounterCall) -> i64 {
///         if let CounterCall::Add(n) = call {
///             self.total += n;
///         }
///         self.total
///     }
/// }
///
/// let manager = multiprocess::Manager::start()?;
/// let counter = manager.create(&Counter { total: 10 })?;
/// assert_eq!(counter.call(&CounterCall::Add(5))?, 15);
/// assert_eq!(counter.get_value()?.total, 15);
/// # Ok(()) }
/// ```
pub trait Managed: Serialize + DeserializeOwned + Send + 'static {
    /// What a client asks of the object.
    type Call: Serialize + DeserializeOwned;
    /// What the object answers.
    type Reply: Serialize + DeserializeOwned;
    /// Answers one call, in the manager process. A panic comes back to the caller as
    /// [`Error::Remote`] of kind `"Panic"`; the object stays as the panic left it.
    fn handle(&mut self, call: Self::Call) -> Self::Reply;
}

/// Where the manager keeps an object of a program's type.
pub(super) type Slot = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

/// What the manager asks of an entry point: a message's first byte (the rest is the step's
/// bytes, as they came: no copy into a message of its own).
const CREATE: u8 = 0;
const CALL: u8 = 1;
const VALUE: u8 = 2;

thread_local! {
    /// The object the entry point called next on this thread works on (it takes it).
    static OBJECT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// The entry point of type `T` in the manager: creates the object in the slot, answers a call
/// on it, or encodes a copy of it.
fn entry<T: Managed>(message: &[u8]) -> Result<Vec<u8>> {
    let slot = OBJECT
        .with(|o| o.borrow_mut().take())
        .ok_or_else(|| Error::state("a managed object's code was called outside the manager"))?;
    let mut object = lock(&slot);
    match message.split_first() {
        Some((&CREATE, initial)) => {
            *object = Some(Box::new(wire::decode::<T>(initial)?));
            Ok(Vec::new())
        }
        Some((&CALL, call)) => {
            let call: T::Call = wire::decode(call)?;
            let this = held::<T>(&mut object)?;
            let reply = crate::panics::catch_quietly(|| this.handle(call)).map_err(|message| {
                Error::Remote {
                    kind: "Panic".into(),
                    message,
                }
            })?;
            wire::encode(&reply)
        }
        Some((&VALUE, _)) => wire::encode(held::<T>(&mut object)?),
        _ => Err(Error::Codec(
            "a managed object's code was asked for an unknown step".into(),
        )),
    }
}

fn held<T: 'static>(object: &mut Option<Box<dyn Any + Send>>) -> Result<&mut T> {
    object
        .as_mut()
        .and_then(|o| o.downcast_mut::<T>())
        .ok_or_else(|| Error::state("the managed object is not of the caller's type"))
}

/// `T`'s entry point, to create an object of `T` in a manager.
pub(super) fn entry_of<T: Managed>() -> Result<Code> {
    Code::of(entry::<T>)
}

/// In the manager: creates an object with the entry point `code`; its slot and entry point, or
/// the reply explaining why not.
pub(super) fn create(
    code: Code,
    initial: Bytes,
) -> std::result::Result<(image::Trampoline, Slot), Reply> {
    let entry = code.resolve().map_err(|e| {
        Reply::Err(
            "TypeError".into(),
            format!("the manager runs another build of the program: {e}"),
        )
    })?;
    let slot: Slot = Arc::new(Mutex::new(None));
    match run(entry, Arc::clone(&slot), CREATE, &initial.0) {
        Reply::Bytes(_) => Ok((entry, slot)),
        other => Err(other),
    }
}

/// In the manager: a call (`Op::Custom`) or a copy (`Op::GetValue`) on an object.
pub(super) fn apply(entry: image::Trampoline, slot: Slot, op: Op) -> Reply {
    match op {
        Op::Custom(call) => run(entry, slot, CALL, &call.0),
        Op::GetValue => run(entry, slot, VALUE, &[]),
        other => Reply::Err(
            "AttributeError".into(),
            format!(
                "a managed object of the program's own type has no {:?}",
                other.name()
            ),
        ),
    }
}

/// Runs `entry` for `step` with `bytes` on the object in `slot` (handed to it in [`OBJECT`],
/// where it takes it from).
fn run(entry: image::Trampoline, slot: Slot, step: u8, bytes: &[u8]) -> Reply {
    let mut message = wire::spare_buffer();
    message.push(step);
    message.extend_from_slice(bytes);
    OBJECT.with(|o| *o.borrow_mut() = Some(slot));
    let result = entry(&message);
    OBJECT.with(|o| *o.borrow_mut() = None);
    wire::recycle(message);
    match result {
        Ok(bytes) => Reply::Bytes(Blob::from(bytes)),
        Err(Error::Remote { kind, message }) => Reply::Err(kind, message),
        Err(e) => Reply::Err("TypeError".into(), e.to_string()),
    }
}

/// A proxy of an object of the program's own type `T` held by a manager (Python's
/// `AutoProxy`): made by [`Manager::create`](super::Manager::create).
pub struct Proxy<T>(pub(super) Handle, pub(super) PhantomData<fn() -> T>);
super::proxy_impls!(Proxy<T>);

impl<T: Managed> Proxy<T> {
    /// Runs [`Managed::handle`] with `call` on the object in the manager, and returns its
    /// answer.
    ///
    /// # Errors
    /// [`Error::Remote`] of kind `"Panic"` if `handle` panicked; as other proxies' calls.
    pub fn call(&self, call: &T::Call) -> Result<T::Reply> {
        self.0.value(Op::Custom(super::encode(call)?))
    }

    /// A copy of the object as it is now (Python's `_getvalue()`).
    pub fn get_value(&self) -> Result<T> {
        match self.0.call(Op::GetValue)? {
            Reply::Bytes(b) => wire::decode(&b.0),
            other => Err(unexpected(other)),
        }
    }
}
