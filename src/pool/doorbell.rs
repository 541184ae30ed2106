//! A pool's doorbell: how its workers on this machine wake the threads that read their replies
//! (see `driver`): a few readers, each for a share of the workers (worker `n` is reader
//! `n % readers`'s). One small shared region every worker maps: for each reader, a sequence
//! word it sleeps on, whether it sleeps, and a bit for each of its workers (modulo [`BITS`]).
//!
//! A worker publishes a reply in its ring, then sets its bit, then wakes its reader if it is
//! asleep. A reader counts itself asleep, then takes its bits, and sleeps only if none was set
//! and its sequence word has not moved. Every step is a sequentially consistent atomic, so
//! either the reader's take sees the bit, or the worker's look sees the reader asleep and
//! moves the word (the futex wait then returns at once or is woken). A bit that was already
//! set needs no wake: the reader has not taken it yet, and will (it is awake, or that bit's
//! setter wakes it), and then reads the ring the reply is in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::Region;

/// Each reader's part starts at word `reader * PART`: its sequence word (moved by each wake),
/// whether it may be asleep, then its bits.
const PART: usize = 2 + WORDS;
const SEQ: usize = 0;
const ASLEEP: usize = 1;
const BELLS: usize = 2;
/// Words of bits a reader.
const WORDS: usize = 32;
/// Bits a reader: its workers `n` and `n + BITS × readers` share one (it then looks at both).
const BITS: u64 = (WORDS * 32) as u64;

/// The doorbell (see the module's docs); clones share it.
#[derive(Clone)]
pub(crate) struct Doorbell {
    region: Arc<Region>,
    /// How many readers share it (at least one; its region holds a part for each).
    readers: usize,
}

/// A doorbell travels as its region and its count of readers.
impl Serialize for Doorbell {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        (&*self.region, self.readers as u32).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Doorbell {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let (region, readers) = <(Region, u32)>::deserialize(deserializer)?;
        let readers = readers as usize;
        if readers == 0 || region.len() / 4 < readers.saturating_mul(PART) {
            return Err(crate::wire::custom_de(format!(
                "a pool's doorbell for {readers} readers does not fit {} bytes",
                region.len()
            )));
        }
        Ok(Doorbell {
            region: Arc::new(region),
            readers,
        })
    }
}

/// The bits a reader took: which of its workers rang.
#[derive(Default)]
pub(crate) struct Rung {
    bits: [u32; WORDS],
    readers: u64,
}

impl Rung {
    /// Whether worker `n` rang (or one sharing its bit).
    pub(crate) fn has(&self, n: u64) -> bool {
        let bit = (n / self.readers.max(1) % BITS) as usize;
        self.bits[bit / 32] & (1 << (bit % 32)) != 0
    }

    fn any(&self) -> bool {
        self.bits.iter().any(|w| *w != 0)
    }
}

impl Doorbell {
    /// A doorbell for `readers` readers (at least one).
    pub(crate) fn new(readers: usize) -> Result<Doorbell> {
        let readers = readers.max(1);
        let region = Region::new(readers * PART * 4)
            .map_err(|e| Error::io("creating shared memory for a pool's doorbell", e))?;
        Ok(Doorbell {
            region: Arc::new(region),
            readers,
        })
    }

    /// How many readers share it.
    pub(crate) fn readers(&self) -> usize {
        self.readers
    }

    /// The reader of worker `n`.
    pub(crate) fn reader_of(&self, n: u64) -> usize {
        (n % self.readers() as u64) as usize
    }

    /// Word `i` of reader `r`'s part (`r` < `readers`, `i` < `PART`: the region holds them).
    fn part(&self, r: usize, i: usize) -> &AtomicU32 {
        &self.region.words()[r * PART + i]
    }

    /// Worker `n` has published a reply (or the parent wants it looked at): sets its bit, and
    /// wakes its reader if it sleeps.
    pub(crate) fn ring(&self, n: u64) {
        let readers = self.readers as u64;
        let r = (n % readers) as usize;
        let bit = (n / readers % BITS) as usize;
        let mask = 1 << (bit % 32);
        if self
            .part(r, BELLS + bit / 32)
            .fetch_or(mask, Ordering::SeqCst)
            & mask
            == 0
            && self.part(r, ASLEEP).load(Ordering::SeqCst) != 0
        {
            self.part(r, SEQ).fetch_add(1, Ordering::SeqCst);
            self.region.wake(self.part(r, SEQ), 1);
        }
    }

    /// Reader `r` takes its bits set so far into `rung` (replacing what it held); sleeps first
    /// (at most `timeout`) if none is set and `sleep`, after spinning briefly as a ring's
    /// reader does (a reply that comes within a few µs costs no sleep).
    pub(crate) fn take(&self, r: usize, rung: &mut Rung, sleep: bool, timeout: Option<Duration>) {
        rung.bits = [0; WORDS];
        rung.readers = self.readers as u64;
        let seq = self.part(r, SEQ).load(Ordering::SeqCst);
        self.part(r, ASLEEP).store(1, Ordering::SeqCst);
        self.take_bits(r, rung);
        if sleep && !rung.any() && timeout != Some(Duration::ZERO) {
            if !crate::queues::spin_until(|| self.rang(r)) {
                self.region.wait(self.part(r, SEQ), seq, timeout);
            }
            self.take_bits(r, rung);
        }
        self.part(r, ASLEEP).store(0, Ordering::SeqCst);
    }

    /// Whether one of reader `r`'s bits is set (a look, not a take).
    fn rang(&self, r: usize) -> bool {
        (0..WORDS).any(|i| self.part(r, BELLS + i).load(Ordering::Relaxed) != 0)
    }

    fn take_bits(&self, r: usize, rung: &mut Rung) {
        for (i, taken) in rung.bits.iter_mut().enumerate() {
            let word = self.part(r, BELLS + i);
            // A plain load first: a word nobody rang stays in this CPU's cache.
            if word.load(Ordering::SeqCst) != 0 {
                *taken |= word.swap(0, Ordering::SeqCst);
            }
        }
    }
}
