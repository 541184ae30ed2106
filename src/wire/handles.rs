//! OS handles inside messages, and the message `Connection::send` writes.
//!
//! A `Connection` (and queues, locks, shared memory) serialises as an index into a side table
//! of OS handles, filled while a message is encoded and sent out of band (SCM_RIGHTS on Unix,
//! DuplicateHandle into the receiver on Windows); the receiver installs the handles it got as
//! the table its decoding takes them from.

use super::*;
use crate::sys;

thread_local! {
    pub(super) static OUTGOING: RefCell<Option<Vec<sys::OwnedHandle>>> = const { RefCell::new(None) };
    pub(super) static INCOMING: RefCell<Option<Vec<Option<sys::OwnedHandle>>>> = const { RefCell::new(None) };
    /// Our own (de)serialisation errors' text, which postcard would otherwise replace with a
    /// generic message.
    pub(super) static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// What a value carrying OS handles is told where none may travel (see [`refusing_handles`]).
    static REFUSAL: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `encode` (an encoding without a side table) with `why` as the error a value carrying
/// OS handles meets in it: the words of the place that refuses them (a pool task, say) rather
/// than the codec's general ones.
pub(crate) fn refusing_handles<T>(why: &'static str, encode: impl FnOnce() -> T) -> T {
    let previous = REFUSAL.replace(Some(why));
    let out = encode();
    REFUSAL.set(previous);
    out
}

/// Encodes `value` into a postcard `flavor` (e.g. straight into shared memory). A value that
/// carries OS handles fails here (no side table is being filled); so does one that does not
/// fit the flavor. The error's text is consumed either way.
pub(crate) fn encode_with_flavor<T, F>(value: &T, flavor: F) -> Result<F::Output>
where
    T: Serialize + ?Sized,
    F: postcard::ser_flavors::Flavor,
{
    postcard::serialize_with_flavor(value, flavor).map_err(encode_error::<T>)
}

/// Encodes `value`, collecting the OS handles inside it.
pub(crate) fn encode_with_handles<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<sys::OwnedHandle>)> {
    encode_with_handles_into(value, Vec::new())
}

/// [`encode_with_handles`] appending to `buf`.
pub(crate) fn encode_with_handles_into<T: Serialize + ?Sized>(
    value: &T,
    buf: Vec<u8>,
) -> Result<(Vec<u8>, Vec<sys::OwnedHandle>)> {
    let previous = OUTGOING.with(|t| t.replace(Some(Vec::new())));
    let bytes = encode_into(value, buf);
    let handles = OUTGOING.with(|t| t.replace(previous)).unwrap_or_default();
    Ok((bytes?, handles))
}

/// The last bytes of every `Connection::send` message, after its handle count: they tell such
/// a message from any other (one written with `send_bytes`, or a pickle from CPython's
/// `Connection.send`) before its count is believed.
pub(super) const SEND_MARK: [u8; 4] = *b"\xa7mpS";

/// Encodes a `Connection::send` message: the value, then (as a trailer, so the value is encoded
/// once, in place) the number of OS handles that follow the frame out of band (4 bytes,
/// little-endian) and [`SEND_MARK`].
pub(crate) fn encode_message<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<sys::OwnedHandle>)> {
    let (mut message, handles) = encode_with_handles(value)?;
    message.extend_from_slice(&(handles.len() as u32).to_le_bytes());
    message.extend_from_slice(&SEND_MARK);
    Ok((message, handles))
}

/// Decodes a message from [`encode_message`] whose handles have been received (`handles`); a
/// `Vec<u8>` is copied out at once (see [`byte_vec`]).
pub(crate) fn decode_message<T: serde::de::DeserializeOwned + 'static>(
    message: &[u8],
    handles: Vec<sys::OwnedHandle>,
) -> Result<T> {
    let (_, body) = split_message(message)?;
    if let Some(value) = byte_vec(body) {
        return Ok(value);
    }
    with_handles(handles, || decode(body))
}

/// Splits a message from [`encode_message`] into its handle count and value bytes; any other
/// message is a codec error that says how to receive it.
pub(crate) fn split_message(message: &[u8]) -> Result<(u32, &[u8])> {
    let parts = message
        .len()
        .checked_sub(8)
        .map(|at| message.split_at(at))
        .filter(|(_, trailer)| trailer[4..] == SEND_MARK);
    // Each handle is referred to in the value by an index of at least one byte.
    let split = parts.and_then(|(body, trailer)| {
        let count = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        (count as usize <= body.len()).then_some((count, body))
    });
    split.ok_or_else(|| Error::Codec(not_sent(message)))
}

/// Said of a message that `recv` refused and that looks like a Python pickle.
pub(crate) const LOOKS_LIKE_PICKLE: &str = "it looks like a Python pickle";

/// Why a message cannot be taken by `recv`, and what to do instead.
pub(super) fn not_sent(message: &[u8]) -> String {
    let mut text = format!(
        "a {}-byte message was not written by `Connection::send` (it lacks send's trailer): \
         receive it with `recv_bytes`",
        message.len()
    );
    // Pickle protocols 2 and later start with PROTO (0x80) and a version; every pickle ends
    // with STOP ('.').
    if message.len() >= 3 && message[0] == 0x80 && message.last() == Some(&b'.') {
        text.push_str("; ");
        text.push_str(LOOKS_LIKE_PICKLE);
        text.push_str(
            ", as CPython's `Connection.send` writes: have the Python side use `send_bytes`, \
             or take the bytes with `recv_bytes`",
        );
    }
    text
}

/// A pickle (protocol 2) of the pair `(kind, text)`, two strings: what a CPython manager sends
/// back to refuse a request, so that CPython's manager client reads our refusal.
pub(crate) fn pickled_pair(kind: &str, text: &str) -> Vec<u8> {
    let mut out = vec![0x80, 2]; // PROTO 2
    for s in [kind, text] {
        out.push(b'X'); // BINUNICODE: 4-byte little-endian length, UTF-8
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&[0x86, b'.']); // TUPLE2, STOP
    out
}

/// See [`super::ready_thread_locals`].
pub(super) fn ready_thread_locals() {
    INCOMING.with(|_| ());
}

/// Runs `f` (which decodes) with `handles` as the table that handles inside messages are taken
/// from; those not taken are closed afterwards.
pub(crate) fn with_handles<R>(handles: Vec<sys::OwnedHandle>, f: impl FnOnce() -> R) -> R {
    let table = handles.into_iter().map(Some).collect();
    let previous = INCOMING.with(|t| t.replace(Some(table)));
    let out = f();
    INCOMING.with(|t| t.replace(previous));
    out
}

/// For `Serialize` impls: adds `handle` to the table of the message being encoded.
pub(crate) fn push_handle<E: serde::ser::Error>(
    what: &str,
    handle: sys::OwnedHandle,
) -> Result<u32, E> {
    OUTGOING.with(|t| match t.borrow_mut().as_mut() {
        Some(table) => {
            table.push(handle);
            Ok(table.len() as u32 - 1)
        }
        None => Err(custom_ser(REFUSAL.get().map_or_else(
            || {
                format!(
                    "a {what} can only travel to another process as a Process argument or in a \
                     message sent with Connection::send"
                )
            },
            str::to_owned,
        ))),
    })
}

/// For `Deserialize` impls: takes handle `index` of the message being decoded.
pub(crate) fn take_handle<E: serde::de::Error>(
    what: &str,
    index: u32,
) -> Result<sys::OwnedHandle, E> {
    INCOMING.with(|t| {
        t.borrow_mut()
            .as_mut()
            .and_then(|table| table.get_mut(index as usize))
            .and_then(Option::take)
            .ok_or_else(|| custom_de(format!("the {what} in this message did not arrive with it")))
    })
}

/// A serde error raised by our own `Serialize` impls, its message kept for the codec error
/// (postcard keeps none of a custom error's text).
pub(crate) fn custom_ser<E: serde::ser::Error>(message: String) -> E {
    let e = E::custom(&message);
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(message));
    e
}

/// As [`custom_ser`], for our own `Deserialize` impls: a proxy that could not reach its
/// manager, a segment that could not be attached, say why in the decode's error.
pub(crate) fn custom_de<E: serde::de::Error>(message: String) -> E {
    let e = E::custom(&message);
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(message));
    e
}

/// A shared-memory region travels as its OS handles, in the message's side table (the receiver
/// maps the same memory).
impl serde::Serialize for sys::Region {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let handles = self.handles().map_err(S::Error::custom)?;
        let indices = handles
            .into_iter()
            .map(|h| push_handle::<S::Error>("shared object", h))
            .collect::<Result<Vec<u32>, _>>()?;
        indices.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for sys::Region {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let indices = Vec::<u32>::deserialize(deserializer)?;
        let handles = indices
            .into_iter()
            .map(|i| take_handle::<D::Error>("shared object", i))
            .collect::<Result<Vec<_>, _>>()?;
        sys::Region::from_handles(handles).map_err(D::Error::custom)
    }
}

/// Any OS handle of this process — a file, a socket, a pipe end: a descriptor on Unix
/// (`OwnedFd`), a `HANDLE` on Windows (`OwnedHandle`) — that travels to another process inside
/// a message, as a `Connection`'s does: Python's `multiprocessing.reduction.send_handle` and
/// `recv_handle`. Sending it sends a duplicate (the sender keeps its own); the receiver owns
/// the one it gets, and turns it back into a file or socket with `into_inner()`.
///
/// It travels with [`Connection::send`](crate::Connection::send) (and, on Unix, through
/// queues) or as a `Process` argument; on Windows the sender must still be running when the
/// message is received (the receiver duplicates the handle out of it).
///
/// ```standalone_crate
/// use std::io::Write as _;
/// use multiprocess::{Handle, Process};
///
/// /// Writes a line into the file whose handle it was given.
/// fn write_into(file: Handle) {
///     let mut file = std::fs::File::from(file.into_inner());
///     file.write_all(b"written by the child\n").unwrap();
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let path = std::env::temp_dir().join(format!("handle-doc-{}", std::process::id()));
/// let file = std::fs::File::create(&path)?;
/// let mut p = Process::new(write_into, (Handle::from(file),));
/// p.start()?;
/// p.join()?;
/// let text = std::fs::read_to_string(&path)?;
/// assert_eq!(text, "written by the child\n");
/// let _ = std::fs::remove_file(&path);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Handle(sys::OwnedHandle);

impl Handle {
    /// The OS handle, owned (`OwnedFd` on Unix, `OwnedHandle` on Windows).
    pub fn into_inner(self) -> sys::OwnedHandle {
        self.0
    }

    /// A second handle to the same object (Python's `os.dup`/`DuplicateHandle`).
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the OS refuses.
    pub fn try_clone(&self) -> Result<Handle> {
        self.0
            .try_clone()
            .map(Handle)
            .map_err(|e| Error::io("duplicating a handle", e))
    }
}

/// Takes any value that gives up its OS handle: a `File`, a `TcpStream`, a `UnixStream`, an
/// `OwnedFd`/`OwnedHandle`...
impl<T: Into<sys::OwnedHandle>> From<T> for Handle {
    fn from(h: T) -> Handle {
        Handle(h.into())
    }
}

impl serde::Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let copy = self.0.try_clone().map_err(S::Error::custom)?;
        push_handle::<S::Error>("Handle", copy)?.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        take_handle::<D::Error>("Handle", index).map(Handle)
    }
}
