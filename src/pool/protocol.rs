//! What a pool's supervisor and its workers say to each other, whatever carries it.
//!
//! A message is `u32 LE header length | header (postcard) | payload`: the payload (encoded
//! arguments, or an encoded value) travels as raw bytes after the small header, never
//! re-encoded. Orders go to a worker ([`Order`]); replies come back ([`Reply`]), one per task,
//! in the order the tasks were sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::wire;

/// The id of the reply that reports how the initializer went.
pub(crate) const INIT: u64 = u64::MAX;
/// The id of a worker's last reply, sent as it leaves on its own (told to stop, or at
/// `maxtasksperchild`): its end can be reaped at once instead of found by a liveness check.
pub(crate) const BYE: u64 = u64::MAX - 1;
/// The id of a reply the parent puts in a worker's reply channel itself, to wake the thread
/// reading it (after killing the worker).
pub(crate) const NUDGE: u64 = u64::MAX - 2;

pub(crate) use crate::registry::Code;

/// Why a task produced no value, in a form that can be cloned (every `get()` reports it) and
/// sent between processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked(String),
    Codec(String),
    Other(String),
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
    pub(crate) maxtasks: Option<u64>,
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
