//! What a pool's supervisor and its workers say to each other, whatever carries it.
//!
//! A message is `u32 LE header length | header (postcard) | payload`: the payload (encoded
//! arguments, or an encoded value) travels as raw bytes after the small header, never
//! re-encoded. Orders go to a worker ([`Order`]); replies come back ([`Reply`]), one per task,
//! in the order the tasks were sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::queues::Ring;
use crate::sys::lock;
use crate::wire;

/// The id of the reply that reports how the initializer went.
pub(crate) const INIT: u64 = u64::MAX;
/// The id of a worker's last reply, sent as it leaves on its own (told to stop, or at
/// `maxtasksperchild`): its end can be reaped at once instead of found by a liveness check.
pub(crate) const BYE: u64 = u64::MAX - 1;

pub(crate) use crate::registry::Code;

/// Why a task produced no value, in a form that can be cloned (every `get()` reports it) and
/// sent between processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked(String),
    Codec(String),
    Other(String),
    /// A worker could not start (its program lacks `init()`): the pool cannot run tasks.
    Bootstrap(String),
    WorkerLost(i32),
    /// The task ran past its own time limit.
    TimeLimit(Duration),
    Cancelled,
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::Panicked(message) => Error::Panicked {
                message: message.clone(),
            },
            Failure::Codec(m) => Error::Codec(m.clone()),
            Failure::Other(m) => Error::State(m.clone()),
            Failure::Bootstrap(m) => Error::Bootstrap(m.clone()),
            Failure::WorkerLost(exitcode) => Error::WorkerLost {
                exitcode: *exitcode,
            },
            Failure::TimeLimit(limit) => Error::TaskTimeout { limit: *limit },
            Failure::Cancelled => Error::Cancelled,
        }
    }

    pub(crate) fn from_error(e: Error) -> Failure {
        match e {
            Error::Codec(m) => Failure::Codec(m),
            Error::Panicked { message } => Failure::Panicked(message),
            Error::Bootstrap(m) => Failure::Bootstrap(m),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// Supervisor → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Order {
    /// Run `code` on the payload and reply with `id`.
    Task { id: u64, code: Code },
    /// Reply [`BYE`] and exit (the pool is closing).
    Stop,
}

/// Worker → supervisor: the outcome of task `id`; the payload is the encoded value when
/// `failure` is `None`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: u64,
    pub(crate) failure: Option<Failure>,
}

/// What a worker needs before its first task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) initializer: Option<(Code, Vec<u8>)>,
    /// The OS handles inside the initializer's arguments (a `Queue`'s, a `Connection`'s): they
    /// travel with the `Setup` as a worker's `Process` argument, a duplicate to each worker.
    pub(crate) init_handles: Arc<Vec<wire::Handle>>,
    pub(crate) maxtasks: Option<u64>,
}

impl Setup {
    /// Runs the initializer, if there is one, with its arguments' OS handles as the table they
    /// are decoded from.
    pub(crate) fn run_initializer(
        &self,
        run: impl FnOnce(Code, &[u8]) -> std::result::Result<Vec<u8>, Failure>,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let Some((code, args)) = &self.initializer else {
            return Ok(Vec::new());
        };
        let handles = self
            .init_handles
            .iter()
            .map(|h| h.try_clone().map(wire::Handle::into_inner))
            .collect::<Result<Vec<_>>>()
            .map_err(Failure::from_error)?;
        wire::with_handles(handles, || run(*code, args)).map(|_| Vec::new())
    }
}

/// A task's arguments as the pool holds them until the task is written to a worker: bytes
/// encoded already (a chunk of a `map`), or the caller's value itself (`apply_async`), encoded
/// only then, straight into the worker's channel where it fits: so no encoded copy of a large
/// argument waits in the pool (10,000 queued tasks of 256 KiB would hold 2.6 GB of freshly
/// faulted pages), and it is copied once on its way.
#[derive(Clone)]
pub(crate) enum Args {
    Encoded(Arc<Vec<u8>>),
    Value(Arc<dyn Encode>),
}

impl Args {
    /// A value to encode when sent; its encoded length is taken now (one counting pass, which
    /// also finds a value that cannot be encoded, or one that carries OS handles).
    pub(crate) fn value<A: Serialize + Send + 'static>(value: A) -> Result<Args> {
        let len = wire::refusing_handles(NO_HANDLES, || wire::encoded_len(&value))?;
        Ok(Args::Value(Arc::new(Lazy {
            value: Mutex::new(value),
            len,
        })))
    }

    /// The encoded length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Args::Encoded(bytes) => bytes.len(),
            Args::Value(v) => v.len(),
        }
    }
}

impl From<Vec<u8>> for Args {
    fn from(bytes: Vec<u8>) -> Args {
        Args::Encoded(Arc::new(bytes))
    }
}

/// Why a task's arguments that carry OS handles are refused (they would need a channel that
/// passes handles, which a worker's ring is not).
pub(crate) const NO_HANDLES: &str = "pool task arguments cannot carry OS handles (a Connection, \
     Lock or Queue); pass them as pool initializer arguments or Process arguments instead";

/// A value that encodes itself on demand (the arguments of [`Args::Value`]).
pub(crate) trait Encode: Send + Sync {
    /// Its encoded length.
    fn len(&self) -> usize;
    /// Writes `head` and the value as one message straight into `ring` if they fit its free
    /// space now; `Ok(false)`: nothing was written.
    fn put_into(&self, ring: &Ring, head: &[u8]) -> Result<bool>;
    /// Encodes the value at the end of `buf`.
    fn encode_into(&self, buf: Vec<u8>) -> Result<Vec<u8>>;
}

/// A value and its encoded length. (The lock makes a `Send` value shareable; the one writer of
/// a worker's channel at a time takes it, so it is never contended.)
struct Lazy<A> {
    value: Mutex<A>,
    len: usize,
}

impl<A: Serialize + Send> Encode for Lazy<A> {
    fn len(&self) -> usize {
        self.len
    }

    fn put_into(&self, ring: &Ring, head: &[u8]) -> Result<bool> {
        ring.put_encoded(head, &*lock(&self.value))
    }

    fn encode_into(&self, buf: Vec<u8>) -> Result<Vec<u8>> {
        wire::encode_into(&*lock(&self.value), buf)
    }
}

/// A message's first part: the length of the encoded header that follows, then the header.
pub(crate) fn head<H: Serialize>(header: &H) -> Result<Vec<u8>> {
    let encoded = wire::encode(header)?;
    let mut m = Vec::with_capacity(4 + encoded.len());
    m.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    m.extend_from_slice(&encoded);
    Ok(m)
}

/// [`head`] for an [`Order`], without allocating: an order's header has a small bounded size
/// (a tag and three varints).
#[derive(Clone, Copy)]
pub(crate) struct OrderHead {
    buf: [u8; 40],
    len: usize,
}

impl OrderHead {
    pub(crate) fn new(order: &Order) -> Result<OrderHead> {
        let mut buf = [0u8; 40];
        let n = postcard::to_slice(order, &mut buf[4..])
            .map_err(|e| Error::Codec(e.to_string()))?
            .len();
        buf[..4].copy_from_slice(&(n as u32).to_le_bytes());
        Ok(OrderHead { buf, len: 4 + n })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Splits a message into its decoded header and its payload.
pub(crate) fn split<H: serde::de::DeserializeOwned>(m: &[u8]) -> Result<(H, &[u8])> {
    let bad = || Error::Codec(format!("a {}-byte pool message is malformed", m.len()));
    let len = m
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    let header = m.get(4..4 + len).ok_or_else(bad)?;
    Ok((wire::decode(header)?, &m[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every failure comes back as the error users match on; the two timeouts differ.
    #[test]
    fn failures_map_to_errors() {
        let limit = Duration::from_millis(300);
        assert!(matches!(
            Failure::TimeLimit(limit).to_error(),
            Error::TaskTimeout { limit: l } if l == limit
        ));
        assert!(matches!(Failure::Cancelled.to_error(), Error::Cancelled));
        assert!(matches!(
            Failure::WorkerLost(-9).to_error(),
            Error::WorkerLost { exitcode: -9 }
        ));
    }

    /// Headers of every size split back; garbage is an error, never a panic.
    #[test]
    fn messages_split_back_and_garbage_is_an_error() {
        let h = OrderHead::new(&Order::Task {
            id: u64::MAX - 3,
            code: Code::dummy(),
        })
        .expect("fits");
        let mut m = h.as_bytes().to_vec();
        m.extend_from_slice(b"payload");
        let (order, payload) = split::<Order>(&m).expect("splits");
        assert!(matches!(order, Order::Task { id, .. } if id == u64::MAX - 3));
        assert_eq!(payload, b"payload");
        for bad in [&[][..], &[9, 0, 0, 0, 1][..], &[255, 255, 255, 255][..]] {
            assert!(split::<Reply>(bad).is_err());
        }
    }
}
