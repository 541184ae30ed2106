//! The worker side of a pool, and the messages between a worker and its supervisor.
//!
//! Tasks and replies travel through two rings in shared memory (see `queues`), one each way.
//! A message is `u32 LE header length | header (postcard) | payload`: the payload (encoded
//! arguments, or an encoded result) is copied in as raw bytes after the small header, never
//! re-encoded.

use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::bootstrap::catch_quietly;
use crate::error::{Error, Result};
use crate::queues::Ring;
use crate::synchronize::Deadline;
use crate::sys::Region;
use crate::sys::image::{self, Trampoline};
use crate::wire;

/// The id of the reply that reports how the initializer went.
pub(crate) const INIT: u64 = u64::MAX;

/// A trampoline as it travels: its offset in the executable and the seal binding it to this
/// build.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Code {
    offset: i64,
    seal: u64,
}

impl Code {
    pub(crate) fn of(t: Trampoline) -> Result<Code> {
        let offset = image::code_offset(t)?;
        Ok(Code {
            offset,
            seal: image::seal(offset),
        })
    }

    fn resolve(self) -> Result<Trampoline> {
        image::trampoline_at(self.offset, self.seal)
    }
}

/// Why a task produced no value, in a form that can be cloned (every `get()` reports it) and
/// sent between processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked(String),
    Codec(String),
    Other(String),
    WorkerLost(i32),
    Timeout,
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
            Failure::WorkerLost(exitcode) => Error::WorkerLost {
                exitcode: *exitcode,
            },
            Failure::Timeout => Error::Timeout,
            Failure::Cancelled => Error::Cancelled,
        }
    }

    fn from_error(e: Error) -> Failure {
        match e {
            Error::Codec(m) => Failure::Codec(m),
            Error::Panicked { message } => Failure::Panicked(message),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// Supervisor → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Order {
    /// Run `code` on the payload and reply with `id`.
    Task { id: u64, code: Code },
    /// Exit (the pool is closing).
    Stop,
}

/// Worker → supervisor: the outcome of task `id`; the payload is the encoded value when `ok`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: u64,
    pub(crate) failure: Option<Failure>,
}

/// What a worker needs before its first task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) initializer: Option<(Code, Vec<u8>)>,
    pub(crate) maxtasks: Option<u64>,
}

/// How a worker and the parent talk: a ring of tasks, a ring of replies, and a counter of the
/// tasks the worker has started (so the parent knows exactly which task a dead worker held).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) tasks: Ring,
    pub(crate) replies: Ring,
    pub(crate) started: Arc<Region>,
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

fn run(code: Code, args: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
    let trampoline = code.resolve().map_err(Failure::from_error)?;
    match catch_quietly(|| trampoline(args)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::from_error(e)),
        Err(panic) => Err(Failure::Panicked(panic)),
    }
}

fn reply(ring: &Ring, id: u64, outcome: std::result::Result<Vec<u8>, Failure>) -> bool {
    let (failure, payload) = match outcome {
        Ok(value) => (None, value),
        Err(f) => (Some(f), Vec::new()),
    };
    let sent = match head(&Reply { id, failure }) {
        Ok(h) => matches!(
            ring.put_parts(&[&h, &payload], Deadline::after(None), &|| false),
            Ok(true)
        ),
        Err(_) => false,
    };
    wire::recycle(payload);
    sent
}

/// A pool worker's life: run the initializer, then tasks until told to stop, or after
/// `maxtasks` tasks. (A daemonic process: it dies with its parent.)
pub(crate) fn worker_main(link: Link, setup: Setup) {
    let init = match &setup.initializer {
        Some((code, args)) => run(*code, args).map(|_| Vec::new()),
        None => Ok(Vec::new()),
    };
    let init_failed = init.is_err();
    if !reply(&link.replies, INIT, init) || init_failed {
        return;
    }
    let started = &link.started.words()[0];
    let mut done = 0u64;
    // Each task runs on its message where it lies in the ring (no copy out); only this
    // worker reads its ring, so holding the ring's consumer side meanwhile blocks nobody.
    let handle = |m: std::borrow::Cow<'_, [u8]>| -> bool {
        let Ok((order, args)) = split::<Order>(&m) else {
            return false;
        };
        let Order::Task { id, code } = order else {
            return false;
        };
        started.fetch_add(1, Ordering::SeqCst);
        reply(&link.replies, id, run(code, args))
    };
    while let Ok(Some(true)) = link.tasks.get_with(Deadline::after(None), handle) {
        done += 1;
        if setup.maxtasks == Some(done) {
            return;
        }
    }
}
