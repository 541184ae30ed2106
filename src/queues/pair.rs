//! Two rings of one size in one shared region, after a front part their owner uses for words
//! of its own: a pool worker's link (orders, replies, and a control block in front) and a
//! manager connection's rings (requests and replies). One region means one descriptor to
//! create, pass and close, and one mapping on each side, where separate rings made one each.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use serde::{Deserialize, Serialize};

use super::Ring;
use super::ring::Shared;
use crate::error::{Error, Result};
use crate::sys::Region;

/// Rings start on page boundaries in the region.
const PAGE: usize = 4096;

/// Two rings in one region (see the module's docs).
#[derive(Clone)]
pub(crate) struct RingPair {
    /// The first ring (a link's orders, a connection's requests).
    pub(crate) first: Ring,
    /// The second ring (replies).
    pub(crate) second: Ring,
    shared: Arc<Shared>,
    /// The front part's size: a multiple of the page size.
    front: usize,
}

impl RingPair {
    /// Two new rings of `bytes` each (rounded up to a power of two) after `front_words` words
    /// of the owner's, all zero.
    pub(crate) fn new(bytes: usize, front_words: usize) -> Result<RingPair> {
        let capacity = bytes.next_power_of_two();
        let front = (front_words * 4).next_multiple_of(PAGE);
        let region = Region::new(RingPair::len(front, capacity))
            .map_err(|e| Error::io("creating shared memory for two rings", e))?;
        RingPair::within(region, front, capacity, true)
    }

    /// The region's length for a front part of `front` bytes and rings of `capacity`.
    fn len(front: usize, capacity: usize) -> usize {
        front + 2 * RingPair::span(capacity)
    }

    /// What a ring of `capacity` takes, rounded up to pages.
    fn span(capacity: usize) -> usize {
        Ring::span(capacity).next_multiple_of(PAGE)
    }

    /// The pair laid out in `region`: set up anew (`fresh`), or as another process did.
    fn within(region: Region, front: usize, capacity: usize, fresh: bool) -> Result<RingPair> {
        let maxsize = fresh.then_some(0);
        let second = front + RingPair::span(capacity);
        let shared = Shared::of(region);
        Ok(RingPair {
            first: Ring::within(Arc::clone(&shared), front, capacity, maxsize)?,
            second: Ring::within(Arc::clone(&shared), second, capacity, maxsize)?,
            shared,
            front,
        })
    }

    /// The owner's words in front of the rings.
    pub(crate) fn front(&self) -> &[AtomicU32] {
        &self.shared.region.words()[..self.front / 4]
    }

    /// Lets go of the region's OS handle once it has travelled (the memory stays mapped),
    /// unless another copy of this pair in this process still holds it (the rings and the pair
    /// itself hold the region).
    pub(crate) fn close_handles(&mut self) {
        if Arc::strong_count(&self.shared) == 3 {
            self.shared.region.close_handles();
        }
    }
}

/// A pair travels as its region and its layout; the receiver maps the region once and finds
/// the rings where the sender laid them out.
impl Serialize for RingPair {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        (
            &self.shared.region,
            self.front as u32,
            self.first.capacity(),
        )
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RingPair {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let (region, front, capacity) = <(Region, u32, u32)>::deserialize(deserializer)?;
        let (front, capacity) = (front as usize, capacity as usize);
        if !front.is_multiple_of(PAGE) || region.len() < RingPair::len(front, capacity) {
            return Err(crate::wire::custom_de(format!(
                "two rings of {capacity} bytes after {front} do not fit a region of {} bytes",
                region.len()
            )));
        }
        RingPair::within(region, front, capacity, false)
            .map_err(|e| crate::wire::custom_de(e.to_string()))
    }
}
