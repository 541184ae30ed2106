//! A queue's wake-up channel for async waiters (cargo feature `tokio`; see `aio` for how they
//! use it): the ring holds it, and signals it from [`Ring::wake`](super::ring::Ring::wake)
//! while an async waiter is counted.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sys;
use crate::wire;

/// A queue's wake-up channel (see `aio`'s docs): the end producers and consumers signal,
/// and the end async waiters watch (one `eventfd` twice on Linux; a pipe's ends on macOS).
pub(crate) struct Wakeup {
    pub(super) signal: sys::OwnedHandle,
    pub(super) watched: sys::OwnedHandle,
}

impl Wakeup {
    /// A new channel, or `None` where the platform has none or it cannot be made
    /// (async waits then look on a timer).
    pub(super) fn new() -> Option<Wakeup> {
        let (signal, watched) = sys::wakeup_pair().ok()?;
        Some(Wakeup { signal, watched })
    }
}

impl Serialize for Wakeup {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let signal = self
            .signal
            .try_clone()
            .map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        let watched = self
            .watched
            .try_clone()
            .map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        (
            wire::push_handle::<S::Error>("queue", signal)?,
            wire::push_handle::<S::Error>("queue", watched)?,
        )
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Wakeup {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (signal, watched) = <(u32, u32)>::deserialize(deserializer)?;
        Ok(Wakeup {
            signal: wire::take_handle::<D::Error>("queue", signal)?,
            watched: wire::take_handle::<D::Error>("queue", watched)?,
        })
    }
}
