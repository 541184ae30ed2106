//! How a child finds the code to run.
//!
//! A target is a function item or a closure that captures nothing: a zero-sized type. For each
//! target type the compiler makes one [`Trampoline`] (decode the arguments, call, encode the
//! value); the parent sends that trampoline's offset in the executable image and the child,
//! running the same executable, finds it at its own base address (see `sys::image`). A [`Run`]
//! value travels as the argument of its own trampoline. Closures that capture state need `fork`.

use std::any::TypeId;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::queues::Ring;
use crate::sys::{
    self,
    image::{self, Trampoline},
};
use crate::wire;

pub(crate) use crate::sys::image::Code;

/// A function the child can call with arguments `Args` (a tuple whose fields spread into the
/// parameters, as Python's `*args`), returning `R`.
///
/// Implemented for every function item and non-capturing closure of up to eight parameters.
/// Use a struct as the single parameter where Python passes keyword arguments (and pass it as
/// the one-element tuple `(Kwargs { .. },)`).
///
/// Parameters are owned values, decoded in a spawned child: take `String`, not `&str` (a borrowed
/// parameter fails to compile with "`Deserialize` is not general enough"), and `Vec<T>`, not
/// `&[T]`. A closure that captures variables is not a target: pass the values as arguments, or
/// use [`Process::from_closure`](crate::Process::from_closure) with the fork start method.
///
/// What the compiler says to these mistakes (README, "Common mistakes"): a closure that moves a
/// `String` (any non-`Copy` value) in is "not a function ... that a child can call", with the
/// fix, at `cargo check`; one that captures only `Copy` values or references fails at
/// `cargo build` (rustc cannot tell a type's size earlier) with "a spawn target cannot capture
/// variables ... pass the values as args, or use Process::from_closure with the fork start
/// method", pointing at the call:
///
/// ```compile_fail,E0080
/// fn main() {
///     multiprocess::init();
///     let k = 3u64;
///     let _p = multiprocess::Process::new(move |x: u64| x * k, (2,)); // captures `k`
/// }
/// ```
///
/// A `&str` parameter fails with "implementation of `Deserialize` is not general enough":
/// take `String`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a target taking the arguments `{Args}`",
    label = "not a function of `{Args}` that a child can call",
    note = "a target is a function, or a closure that captures nothing, whose parameters are the \
            fields of the argument tuple (owned types: `String`, not `&str`)",
    note = "a closure that captures variables cannot go to a spawned child: pass the values as \
            arguments, or start it with `Process::from_closure` and the fork start method"
)]
pub trait Target<Args, R>: Copy + Send + 'static {
    /// Calls the target.
    fn call(self, args: Args) -> R;
}

macro_rules! impl_target {
    ($($a:ident),*) => {
        // Reported as "not a target" (the trait's message) rather than as the failing bound
        // inside (`String: Copy` for a closure that captures a `String`).
        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($a,)*> Target<($($a,)*), Ret> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + 'static,
        {
            crate::sys::forked_child_code! {
                // The target's call, with the forked child's code (issue 19).
                #[allow(non_snake_case)]
                fn call(self, ($($a,)*): ($($a,)*)) -> Ret {
                    self($($a),*)
                }
            }
        }
    };
}
impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);
impl_target!(A1, A2, A3, A4, A5, A6, A7);
impl_target!(A1, A2, A3, A4, A5, A6, A7, A8);

/// Fails the build when the target type `$f` captures variables, with a message that says what
/// to do. Every public function taking a target starts with it: rustc then names the user's
/// call as the place of the error (it points at the first instance that names the check).
macro_rules! no_capture {
    ($f:ty) => {
        #[allow(clippy::let_unit_value)]
        let () = $crate::sys::image::NoCapture::<$f>::CHECK;
    };
}
pub(crate) use no_capture;

/// A value that travels to a worker and back: what every item, argument and result of the
/// pool's methods is (a short name for the bounds they repeat).
pub(crate) trait Data: Serialize + DeserializeOwned + 'static {}
impl<T: Serialize + DeserializeOwned + 'static> Data for T {}

/// Writes public methods that take a target `f` and its `items` (a pool's `map`, `starmap` and
/// `imap` with their `_chunked`, `_async` and `_with` forms), so that the parts they all share
/// are written once: `items` as an iterator (living for `'a` where the method names `'a`),
/// the bounds (`F` a target of the items, items and results serde values) and the
/// [`no_capture`] check. Each method is given as its signature without those parts, then its
/// body. A builder's `initializer` (a target of `args`, run once per worker) has a form of its
/// own.
macro_rules! target_methods {
    (
        $(#[$doc:meta])*
        pub fn initializer<F, A>(mut $self:ident, $f:ident, $args:ident) -> Self
            where F: Target<A, ()> $body:block
    ) => {
        $(#[$doc])*
        pub fn initializer<F, A>(mut $self, $f: F, $args: A) -> Self
        where
            F: $crate::registry::Target<A, ()>,
            A: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
        {
            $crate::registry::no_capture!(F);
            $body
        }
    };
    ($(
        $(#[$doc:meta])*
        pub fn $name:ident<$($lt:lifetime,)? F, $item:ident, R>
            (&$self:ident, $f:ident, $items:ident $(, $p:ident: $pt:ty)*) -> $ret:ty
            where F: Target<$args:ty, R> $body:block
    )*) => {$(
        $(#[$doc])*
        pub fn $name<$($lt,)? F, $item, R>(
            &$self,
            $f: F,
            $items: impl IntoIterator<Item = $item> $(+ $lt)?,
            $($p: $pt),*
        ) -> $ret
        where
            F: $crate::registry::Target<$args, R>,
            $item: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
            R: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
        {
            $crate::registry::no_capture!(F);
            $body
        }
    )*};
}
pub(crate) use target_methods;

/// Python's "subclass `Process` and override `run()`": a serialisable value whose `run` is the
/// child's work. Start it with [`Process::from_run`](crate::Process::from_run).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greeter { name: String }
///
/// impl multiprocess::Run for Greeter {
///     type Output = String;
///     fn run(self) -> String { format!("hello, {}", self.name) }
/// }
/// ```
pub trait Run: Serialize + DeserializeOwned + Send + 'static {
    /// What `run` returns to the parent (through [`Process::result`](crate::Process::result)).
    type Output: Serialize + DeserializeOwned + 'static;
    /// The child's work.
    fn run(self) -> Self::Output;
}

/// The type a target returns, for checking `result::<T>()` calls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResultType {
    pub(crate) id: TypeId,
    pub(crate) name: &'static str,
}

impl ResultType {
    pub(crate) fn of<R: 'static>() -> Self {
        ResultType {
            id: TypeId::of::<R>(),
            name: std::any::type_name::<R>(),
        }
    }
}

/// What a process runs: a target with its arguments, a [`Run`] value, or a closure, kept as
/// values. A forked child calls it with them as they are (Python's fork pickles nothing: no
/// encoding, no copies of the OS handles inside, nothing to decode in the child); any other
/// start sends its [`Image`] (a closure has none: fork only).
pub(crate) struct Job(Box<dyn Pending>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Job {
    /// A job calling `target(args...)`.
    pub(crate) fn target<F, A, R>(args: A) -> Job
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
    {
        Job(Box::new(TargetCall::<F, A, R> {
            args: Some(args),
            types: std::marker::PhantomData,
        }))
    }

    /// A job calling `obj.run()`.
    pub(crate) fn run<T: Run>(obj: T) -> Job {
        Job(Box::new(RunCall { obj: Some(obj) }))
    }

    /// A job calling a closure (fork only).
    pub(crate) fn closure<F, R>(f: F) -> Job
    where
        F: FnOnce() -> R + Send + 'static,
        R: Serialize,
    {
        Job(Box::new(ClosureCall { f: Some(f) }))
    }

    /// What a child started from the executable image runs: the trampoline with the arguments
    /// encoded now. `None` for a closure, which only a forked child can run.
    pub(crate) fn image(&self) -> Option<Image> {
        self.0.image()
    }

    /// Runs the job in the calling process (a forked child, or `Process::run` for a closure)
    /// with the values as they are, taking them (a second call fails); the value encoded.
    /// (`&mut`, not `self`: a forked child keeps the job rather than free it, see
    /// [`Pending::call`].)
    pub(crate) fn call(&mut self) -> Result<Vec<u8>> {
        self.0.call()
    }

    /// Drops the values (they went to a child), keeping the rest for the caller to free later.
    pub(crate) fn discard(&mut self) {
        self.0.discard();
    }
}

/// What a [`Job`] holds.
trait Pending: Send {
    /// The trampoline with the values encoded, for a child that starts from the image.
    fn image(&self) -> Option<Image>;
    /// Calls the target with the values as they are, returning the encoded value. Takes them:
    /// a second call fails. (Not `self: Box<Self>`: a forked child would free the box, and
    /// every heap page a forked child writes is a copy-on-write fault, issue 19.)
    fn call(&mut self) -> Result<Vec<u8>>;
    /// Drops the values, as [`Job::discard`].
    fn discard(&mut self);
}

/// Drops what `slot` holds, for [`Pending::discard`]. A value that owns nothing stays where it
/// is: writing `None` frees nothing, and a forked child alive shares the page (a copy, issue
/// 19).
fn drop_value<T>(slot: &mut Option<T>) {
    if std::mem::needs_drop::<T>() {
        *slot = None;
    }
}

/// [`Pending`] for `target(args...)`.
struct TargetCall<F, A, R> {
    args: Option<A>,
    types: std::marker::PhantomData<fn() -> (F, R)>,
}

impl<F, A, R> Pending for TargetCall<F, A, R>
where
    F: Target<A, R>,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
{
    fn image(&self) -> Option<Image> {
        Some(Image::encode(call_target::<F, A, R>, self.args.as_ref()))
    }

    crate::sys::forked_child_code! {
        fn call(&mut self) -> Result<Vec<u8>> {
            let place = IN_PLACE.take();
            let args = self.args.take().ok_or_else(called_twice)?;
            reply(place, image::conjure::<F>().call(args))
        }
    }

    fn discard(&mut self) {
        drop_value(&mut self.args);
    }
}

/// [`Pending`] for `obj.run()`.
struct RunCall<T> {
    obj: Option<T>,
}

impl<T: Run> Pending for RunCall<T> {
    fn image(&self) -> Option<Image> {
        Some(Image::encode(call_run::<T>, self.obj.as_ref()))
    }

    crate::sys::forked_child_code! {
        fn call(&mut self) -> Result<Vec<u8>> {
            let obj = self.obj.take().ok_or_else(called_twice)?;
            wire::encode(&obj.run()).map_err(|e| context::<T::Output>("encoding the returned value", e))
        }
    }

    fn discard(&mut self) {
        drop_value(&mut self.obj);
    }
}

/// [`Pending`] for a closure.
struct ClosureCall<F> {
    f: Option<F>,
}

impl<F, R> Pending for ClosureCall<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize,
{
    fn image(&self) -> Option<Image> {
        None
    }

    crate::sys::forked_child_code! {
        fn call(&mut self) -> Result<Vec<u8>> {
            let f = self.f.take().ok_or_else(called_twice)?;
            wire::encode(&f()).map_err(|e| context::<R>("encoding the returned value", e))
        }
    }

    fn discard(&mut self) {
        drop_value(&mut self.f);
    }
}

fn called_twice() -> Error {
    Error::state("the target was handed to the child at start()")
}

/// A trampoline in the executable image and its encoded arguments, with the OS handles inside
/// them (copies, the values keep theirs): what a spawned child (or the fork server's) runs.
pub(crate) struct Image {
    pub(crate) trampoline: Trampoline,
    /// The arguments, or why they could not be encoded (reported by `start()`).
    pub(crate) args: std::result::Result<Vec<u8>, String>,
    pub(crate) handles: Vec<sys::OwnedHandle>,
}

impl Image {
    /// Encodes `args` (`None`: already handed to a child) for `trampoline`.
    fn encode<A: Serialize>(trampoline: Trampoline, args: Option<&A>) -> Image {
        let encoded = match args {
            Some(args) => wire::encode_with_handles(args).map_err(reason),
            None => Err(called_twice().to_string()),
        };
        match encoded {
            Ok((bytes, handles)) => Image {
                trampoline,
                args: Ok(bytes),
                handles,
            },
            Err(e) => Image {
                trampoline,
                args: Err(e),
                handles: Vec::new(),
            },
        }
    }

    /// Runs the trampoline here (`Process::run`), returning the encoded value.
    pub(crate) fn call(self) -> Result<Vec<u8>> {
        let args = self.args.map_err(Error::Codec)?;
        wire::with_handles(self.handles, || (self.trampoline)(&args))
    }
}

pub(crate) fn call_target<F, A, R>(args: &[u8]) -> Result<Vec<u8>>
where
    F: Target<A, R>,
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    // Taken before the call: a child the target forks must not find it.
    let place = IN_PLACE.take();
    let args = wire::decode(args).map_err(|e| context::<A>("decoding the arguments", e))?;
    reply(place, image::conjure::<F>().call(args))
}

crate::sys::forked_child_code! {
    /// Encodes a target's `value`: into the ring a pool worker named (`place`, taken before the
    /// call) if it fits there, else into a buffer the caller may give back (a pool worker does,
    /// after its reply: a large value then costs no fresh pages each time).
    fn reply<R: Serialize + 'static>(place: Option<(Ring, Vec<u8>)>, value: R) -> Result<Vec<u8>> {
        if let Some((ring, head)) = place {
            if matches!(ring.put_encoded(&head, &value), Ok(true)) {
                SENT.set(true);
                return Ok(Vec::new());
            }
        } else if std::any::TypeId::of::<R>() == std::any::TypeId::of::<()>() {
            // `()` encodes to nothing: no buffer, no encoder (in a forked child each would be a
            // thread-local page and windows of code to fault in, issue 19).
            return Ok(Vec::new());
        }
        wire::encode_into(&value, wire::spare_buffer())
            .map_err(|e| context::<R>("encoding the returned value", e))
    }
}

/// Makes this thread's thread-locals for running a target ready (see
/// [`wire::ready_thread_locals`]): before a fork, so the child registers no destructor.
pub(crate) fn ready_thread_locals() {
    IN_PLACE.with(|_| ());
    wire::ready_thread_locals();
}

thread_local! {
    /// Where a pool worker wants the value of the task it runs now: a ring, after a head.
    static IN_PLACE: std::cell::Cell<Option<(Ring, Vec<u8>)>> = const { std::cell::Cell::new(None) };
    /// Whether the value went there.
    static SENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call` (a trampoline's) so that a target's value is encoded straight into `ring`,
/// after `head`, as one message, if it fits the ring's free space then (a pool worker's reply:
/// no copy through a buffer); whether it went there (the trampoline then returned no bytes).
pub(crate) fn replying_into<T>(ring: &Ring, head: Vec<u8>, call: impl FnOnce() -> T) -> (T, bool) {
    SENT.set(false);
    IN_PLACE.set(Some((ring.clone(), head)));
    let out = call();
    IN_PLACE.set(None);
    (out, SENT.replace(false))
}

fn call_run<T: Run>(args: &[u8]) -> Result<Vec<u8>> {
    let obj = wire::decode::<T>(args).map_err(|e| context::<T>("decoding the Run value", e))?;
    wire::encode(&obj.run()).map_err(|e| context::<T::Output>("encoding the returned value", e))
}

/// Names the value and its type in a codec error.
fn context<T>(what: &str, e: Error) -> Error {
    Error::Codec(format!(
        "{what} ({}): {}",
        std::any::type_name::<T>(),
        reason(e)
    ))
}

/// An error's text, without the `codec error:` prefix of a codec error.
fn reason(e: Error) -> String {
    match e {
        Error::Codec(m) => m,
        other => other.to_string(),
    }
}
