//! The ring under every queue (and the pool's channels): a queue's bytes in shared memory and
//! the counters around them, their layout, the two sides' locks and the repair of what a dead
//! process left, and the waits. Putting is in `put.rs`, getting in `get.rs`, the encoding into
//! the ring in `codec.rs`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synchronize::{Deadline, lock_word_until, unlock_word};
use crate::sys::{self, Region};
use crate::wire;

/// Default byte capacity of a queue's ring.
pub(super) const DEFAULT_CAPACITY: usize = 64 << 20;
/// Smallest capacity accepted.
pub(super) const MIN_CAPACITY: usize = 4096;
/// Header words (512 bytes) before the ring. Fields producers and consumers write sit on
/// separate cache lines.
pub(super) const HEADER_WORDS: usize = 128;
pub(super) const CAPACITY: usize = 0; // ring bytes (a power of two)
pub(super) const MAXSIZE: usize = 1; // Python's maxsize; 0 = unbounded
pub(super) const BROKEN: usize = 2; // 1 once a process died in the middle of a message
pub(super) const WSTREAM: usize = 3; // 1 while a producer streams a message longer than the ring
pub(super) const RSTREAM: usize = 4; // 1 while a consumer reads one
pub(super) const WHANDLES: usize = 5; // 1 while a producer sends a message's handles and publishes it
pub(super) const RHANDLES: usize = 6; // 1 while a consumer takes a message's handles and frees it
/// Set in a message's header word when its OS handles wait in the side channel; the payload
/// then starts with their count (4 bytes, little-endian).
pub(super) const CARRIES_HANDLES: u32 = 1 << 31;
pub(super) const WLOCK: usize = 16; // producers' lock word
pub(super) const TAIL: usize = 32; // bytes written and published (wrapping)
pub(super) const PUTS: usize = 33; // messages put (wrapping)
pub(super) const HEAD_SEEN: usize = 34; // HEAD as producers last read it (never ahead of HEAD)
/// Words 36-37, one 64-bit word: TAIL and PUTS as the last producer settled them together
/// (see [`Ring::settle`]); a producer that died after it published messages but before it
/// moved TAIL is repaired from there.
pub(super) const SETTLED: usize = 36;
pub(super) const RLOCK: usize = 48; // consumers' lock word
pub(super) const HEAD: usize = 64; // bytes consumed (wrapping)
pub(super) const TAIL_SEEN: usize = 66; // TAIL as consumers last read it (never ahead of TAIL)
/// Words 68-69, one 64-bit word: HEAD as the last consumer's take moves it, and the messages
/// taken in all (wrapping), stored as the take's one decisive step (see [`Ring::taken`]).
pub(super) const TAKEN: usize = 68;
pub(super) const CONSUMERS_ASLEEP: usize = 80;
pub(super) const PRODUCERS_ASLEEP: usize = 81;
/// Header word 82: async waiters of either side (feature `tokio`, see `aio`), also counted in
/// both sides' sleeper counts (`CONSUMERS_ASLEEP`, `PRODUCERS_ASLEEP`): a wake with one of
/// these counted signals the queue's wake-up channel too.
#[cfg(feature = "tokio")]
pub(super) const ASYNC_WAITERS: usize = 82;
pub(super) const UNFINISHED: usize = 96; // JoinableQueue: put and not yet task_done
pub(super) const JOINERS_ASLEEP: usize = 97;
/// How long a waiting side spins before sleeping.
pub(super) const SPIN: Duration = Duration::from_micros(20);
/// How often a reader stuck inside a message checks that its writer is alive.
pub(super) const LIVENESS_CHECK: Duration = Duration::from_millis(50);
/// Largest message accepted (as `Connection`'s default limit).
pub(super) const LIMIT: usize = wire::DEFAULT_LIMIT as usize;

/// The shared part of every queue: the ring and its counters.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ring {
    pub(super) shared: Arc<Shared>,
    /// Where the ring's header starts in the region (a multiple of the page size; 0 but for
    /// rings that share a region, see [`Ring::within`]).
    at: usize,
    /// Called in this process after each publication to consumers (see [`Ring::on_publish`]).
    #[serde(skip)]
    published: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What every handle to a ring shares, in one allocation: a handle's clone or drop writes one
/// count (in a fan-out whose children each take a queue's handle, one page copied at each fork
/// in the parent and in each child, not two or three: issue 19, W11).
#[derive(Serialize, Deserialize)]
pub(crate) struct Shared {
    pub(super) region: Region,
    /// Where the OS handles inside messages travel (Unix; `None` for the pool's rings and on
    /// Windows).
    pub(super) side: Option<Side>,
    /// The channel that wakes async waiters (feature `tokio`; `None` for the pool's rings,
    /// where async waits look on a timer).
    #[cfg(feature = "tokio")]
    pub(super) wakeup: Option<super::wakeup::Wakeup>,
}

impl Shared {
    /// A region's, with no side channel and no wake-up channel (the pool's rings).
    pub(super) fn of(region: Region) -> Arc<Shared> {
        Arc::new(Shared {
            region,
            side: None,
            #[cfg(feature = "tokio")]
            wakeup: None,
        })
    }
}

/// A queue's side channel: a pair of datagram sockets every handle to the queue holds. A
/// producer sends a message's handles there (under the producers' lock) just before it
/// publishes the message; the consumer that takes the message receives them, in the same
/// order. Handles in flight live in the socket, so their sender may exit at once.
pub(super) struct Side {
    pub(super) send: sys::OwnedHandle,
    pub(super) recv: sys::OwnedHandle,
}

impl Serialize for Side {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let send = self
            .send
            .try_clone()
            .map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        let recv = self
            .recv
            .try_clone()
            .map_err(|e| crate::wire::custom_ser(e.to_string()))?;
        (
            wire::push_handle::<S::Error>("queue", send)?,
            wire::push_handle::<S::Error>("queue", recv)?,
        )
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Side {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (send, recv) = <(u32, u32)>::deserialize(deserializer)?;
        Ok(Side {
            send: wire::take_handle::<D::Error>("queue", send)?,
            recv: wire::take_handle::<D::Error>("queue", recv)?,
        })
    }
}

/// Spins up to [`SPIN`] until `ready()`; true if it became ready.
pub(crate) fn spin_until(ready: impl FnMut() -> bool) -> bool {
    spin_for(SPIN, ready)
}

/// Spins up to `limit` until `ready()`; true if it became ready. It looks after each pause
/// (one `pause` is some 40 ns on x86: a peer's message is seen within that of its arrival).
///
/// Between rounds of 64 it yields the CPU: when the other side runs on this same CPU,
/// spinning cannot help it, and yielding lets it run at once.
pub(crate) fn spin_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    // The clock is read after the first round only: most looks end within it.
    let mut start = None;
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        if start.get_or_insert_with(Instant::now).elapsed() >= limit {
            return ready();
        }
        std::thread::yield_now();
    }
}

/// The bytes a message of `len` bytes takes in the ring: its header word, the bytes, and
/// padding to the next multiple of 4 (where the next header word goes).
pub(super) fn span(len: usize) -> u64 {
    (len as u64 + 7) & !3
}

/// Whether a message of `len` bytes is published whole (its span and the zeroed word after it
/// fit the ring), rather than streamed.
pub(super) fn fits_whole(len: usize, cap: u32) -> bool {
    span(len) + 4 <= cap as u64
}

/// A header word: the message's length plus one (never 0, which means "nothing here yet"),
/// and `flags`.
pub(super) fn header_word(len: usize, flags: u32) -> u32 {
    (len as u32 + 1) | flags
}

impl Ring {
    /// A ring whose messages may carry OS handles where the platform allows it (Unix).
    pub(super) fn with_side_channel(capacity: usize, maxsize: u32) -> Result<Ring> {
        let (region, capacity) = Ring::region(capacity)?;
        let shared = Shared {
            region,
            side: sys::handle_channel()
                .ok()
                .map(|(send, recv)| Side { send, recv }),
            #[cfg(feature = "tokio")]
            wakeup: super::wakeup::Wakeup::new(),
        };
        Ring::within(Arc::new(shared), 0, capacity, Some(maxsize))
    }

    /// A ring with neither side channel nor wake-up channel.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize, maxsize: u32) -> Result<Ring> {
        let (region, capacity) = Ring::region(capacity)?;
        Ring::within(Shared::of(region), 0, capacity, Some(maxsize))
    }

    /// A region for one ring of at least `capacity` bytes, and the capacity (a power of two).
    fn region(capacity: usize) -> Result<(Region, usize)> {
        if !(MIN_CAPACITY..=1 << 31).contains(&capacity) {
            return Err(Error::InvalidArgument(format!(
                "a queue's capacity must be between {MIN_CAPACITY} bytes and 2 GiB, not {capacity}"
            )));
        }
        let capacity = capacity.next_power_of_two();
        let region = Region::new(Ring::span(capacity))
            .map_err(|e| Error::io("creating a queue's shared memory", e))?;
        Ok((region, capacity))
    }

    /// The bytes a ring of `capacity` (a power of two) takes in a region: its header and its
    /// ring.
    pub(crate) fn span(capacity: usize) -> usize {
        HEADER_WORDS * 4 + capacity
    }

    /// The ring of `capacity` bytes (a power of two) whose header starts `at` bytes into
    /// `shared`'s region (a multiple of 4096; `at + span(capacity)` within the region), so that
    /// several rings share one region: one descriptor and one mapping for a pool worker's two
    /// rings.
    /// `Some(maxsize)` sets up a new ring in zeroed memory; `None` takes one set up already.
    pub(crate) fn within(
        shared: Arc<Shared>,
        at: usize,
        capacity: usize,
        maxsize: Option<u32>,
    ) -> Result<Ring> {
        let len = shared.region.len();
        if !at.is_multiple_of(4096)
            || !capacity.is_power_of_two()
            || at
                .checked_add(Ring::span(capacity))
                .is_none_or(|end| end > len)
        {
            return Err(Error::InvalidArgument(format!(
                "a ring of {capacity} bytes at {at} does not fit a region of {len} bytes"
            )));
        }
        let ring = Ring {
            shared,
            at,
            published: None,
        };
        match maxsize {
            Some(maxsize) => {
                ring.word(CAPACITY)
                    .store(capacity as u32, Ordering::Relaxed);
                ring.word(MAXSIZE).store(maxsize, Ordering::Relaxed);
            }
            None if ring.capacity() as usize != capacity => {
                return Err(Error::InvalidArgument(format!(
                    "the ring at {at} holds {} bytes, not {capacity}",
                    ring.capacity()
                )));
            }
            None => {}
        }
        Ok(ring)
    }

    /// Has `published` called after each publication to consumers by this handle (and its
    /// clones), as its sleepers are woken: a pool worker's replies ring the pool's doorbell,
    /// where the parent's readers sleep (not on any ring).
    pub(crate) fn on_publish(&mut self, published: Arc<dyn Fn() + Send + Sync>) {
        self.published = Some(published);
    }

    /// The ring's first header word.
    #[inline]
    fn base(&self) -> *mut u8 {
        // SAFETY: `at` is inside the region (checked in `within`), which lives as long as
        // `self`.
        unsafe { self.shared.region.base().add(self.at) }
    }

    #[inline]
    pub(super) fn word(&self, i: usize) -> &AtomicU32 {
        assert!(i < HEADER_WORDS);
        // SAFETY: the ring (page-aligned, so 4-byte aligned) starts with HEADER_WORDS words
        // and lives as long as `self`; `i` is one of the constants above (the assertion folds
        // away).
        unsafe { &*(self.base() as *const AtomicU32).add(i) }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.word(CAPACITY).load(Ordering::Relaxed)
    }

    pub(super) fn data(&self) -> *mut u8 {
        // SAFETY: the ring is HEADER_WORDS * 4 + capacity bytes long.
        unsafe { self.base().add(HEADER_WORDS * 4) }
    }

    /// The header word of the message at position `at` (a multiple of 4): 0 until a producer
    /// publishes a message there (see [`Ring::write_whole`]).
    pub(super) fn header(&self, at: u32) -> &AtomicU32 {
        debug_assert_eq!(at % 4, 0);
        let start = (at & (self.capacity() - 1) & !3) as usize;
        // SAFETY: `start` is a multiple of 4 and at most `capacity - 4`, and the ring starts
        // 512 bytes into a page-aligned mapping, so the word is aligned and inside the ring;
        // the mapping lives as long as `self`. Header words are only accessed atomically while
        // they can be read as headers; plain copies of message bytes over them (in a later lap)
        // are ordered after those accesses by HEAD (release by the consumer, acquire by the
        // producer that reuses the space).
        unsafe { &*(self.data().add(start) as *const AtomicU32) }
    }

    /// Copies `bytes` into the ring at position `at` (wrapping).
    pub(super) fn copy_in(&self, at: u32, bytes: &[u8]) {
        let cap = self.capacity() as usize;
        let start = at as usize & (cap - 1);
        let first = bytes.len().min(cap - start);
        // SAFETY: both parts lie inside the ring (start < cap, first <= cap - start, the rest
        // <= cap since callers never write more than the free space). The bytes are free space
        // that only the holder of the producers' lock writes, published afterwards by a
        // release store of the message's header word (or of TAIL, for a streamed message).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data().add(start), first);
            if first < bytes.len() {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr().add(first),
                    self.data(),
                    bytes.len() - first,
                );
            }
        }
    }

    /// Copies bytes out of the ring from position `at` (wrapping) into `out`.
    pub(super) fn copy_out(&self, at: u32, out: &mut [u8]) {
        let cap = self.capacity() as usize;
        let start = at as usize & (cap - 1);
        let first = out.len().min(cap - start);
        // SAFETY: as in `copy_in`; these bytes were published (an acquire load of their
        // header word, or of TAIL) and only the holder of the consumers' lock reads and then
        // frees them.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(start), out.as_mut_ptr(), first);
            if first < out.len() {
                std::ptr::copy_nonoverlapping(
                    self.data(),
                    out.as_mut_ptr().add(first),
                    out.len() - first,
                );
            }
        }
    }

    /// The `len` bytes at position `at`, if they do not wrap around the ring's end.
    ///
    /// Only for the holder of the consumers' lock, for a published message: producers never
    /// write those bytes until HEAD moves past them, which the caller does after using the
    /// slice.
    pub(super) fn contiguous(&self, at: u32, len: usize) -> Option<&[u8]> {
        let cap = self.capacity() as usize;
        let start = at as usize & (cap - 1);
        // SAFETY: `start + len <= cap` keeps the slice inside the ring; the bytes are a
        // published message that nobody writes while the consumers' lock is held (see above).
        (start + len <= cap)
            .then(|| unsafe { std::slice::from_raw_parts(self.data().add(start), len) })
    }

    /// Copies `len` bytes out of the ring from position `at` into a new vector (not zeroed
    /// first: large messages would pay for the zeroing twice).
    pub(super) fn copy_out_new(&self, at: u32, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let cap = self.capacity() as usize;
        let start = at as usize & (cap - 1);
        let first = len.min(cap - start);
        // SAFETY: as in `copy_out`, the source bytes are inside the ring and published; the
        // destination has capacity for `len` bytes, all of which are written before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.data(), out.as_mut_ptr().add(first), len - first);
            out.set_len(len);
        }
        out
    }

    /// Hands the published message of `len` bytes at `start` to `f`, borrowed from the ring
    /// when it lies there in one piece.
    pub(super) fn read_message<R>(
        &self,
        start: u32,
        len: usize,
        f: impl FnOnce(Cow<'_, [u8]>) -> R,
    ) -> R {
        match self.contiguous(start, len) {
            Some(bytes) => f(Cow::Borrowed(bytes)),
            None => f(Cow::Owned(self.copy_out_new(start, len))),
        }
    }

    pub(super) fn used(&self) -> u32 {
        self.word(TAIL)
            .load(Ordering::Acquire)
            .wrapping_sub(self.word(HEAD).load(Ordering::Acquire))
    }

    /// Producers' side (under their lock): whether `need` bytes are free. Asks the
    /// consumers' HEAD only when the copy last read is not enough, so that a producer running
    /// ahead does not pull the consumers' cache line over once per message.
    pub(super) fn room(&self, need: u32) -> bool {
        let cap = self.capacity();
        let tail = self.word(TAIL).load(Ordering::Relaxed);
        let free = |head: u32| {
            cap.checked_sub(tail.wrapping_sub(head))
                .is_some_and(|free| free >= need)
        };
        free(self.word(HEAD_SEEN).load(Ordering::Relaxed)) || {
            let head = self.word(HEAD).load(Ordering::Acquire);
            self.word(HEAD_SEEN).store(head, Ordering::Relaxed);
            free(head)
        }
    }

    /// Consumers' side (under their lock), inside a streamed message: whether `need` bytes
    /// are published. Asks the producers' TAIL only when the copy last read is not enough (the
    /// copy, read under an acquire load and passed on under the consumers' lock, still orders
    /// the bytes it covers).
    pub(super) fn published(&self, need: u32) -> bool {
        let cap = self.capacity();
        let head = self.word(HEAD).load(Ordering::Relaxed);
        let published = |tail: u32| {
            let n = tail.wrapping_sub(head);
            n <= cap && n >= need
        };
        published(self.word(TAIL_SEEN).load(Ordering::Relaxed)) || {
            let tail = self.word(TAIL).load(Ordering::Acquire);
            self.word(TAIL_SEEN).store(tail, Ordering::Relaxed);
            published(tail)
        }
    }

    /// The messages taken in all (wrapping).
    pub(super) fn gets(&self, order: Ordering) -> u32 {
        (self.pair(TAKEN).load(order) >> 32) as u32
    }

    /// The messages in the ring, as `qsize` reports them: a producer found dead holding its
    /// lock (it may have counted a message it had not published) is repaired first.
    pub(super) fn count(&self) -> u32 {
        let owner = self.word(WLOCK).load(Ordering::Relaxed) & !(1 << 31);
        if owner != 0
            && !sys::process_alive(owner)
            && matches!(
                self.lock(WLOCK, Deadline::after(Some(Duration::from_millis(50)))),
                Ok(true)
            )
        {
            self.unlock(WLOCK);
        }
        self.items()
    }

    /// Whether the next message is published (a hint for a ring with one consumer, read
    /// without its lock): the header word at HEAD, in the cache line the consumer's get reads
    /// next anyway. (Counting the messages instead reads PUTS, in the line each put writes
    /// twice: a consumer spinning there took that line from the producer in the middle of
    /// every put, and the producer's unlock waited for it back: issue 19, W8.)
    pub(crate) fn next_published(&self) -> bool {
        let head = self.word(HEAD).load(Ordering::Relaxed) & !3;
        self.header(head).load(Ordering::Acquire) != 0
    }

    pub(super) fn items(&self) -> u32 {
        // Taken first: every message counted there was counted in PUTS before it was
        // published, so PUTS read afterwards is never behind.
        let gets = self.gets(Ordering::Acquire);
        let puts = self.word(PUTS).load(Ordering::Acquire);
        puts.wrapping_sub(gets).min(i32::MAX as u32)
    }

    #[inline]
    pub(super) fn check_broken(&self) -> Result<()> {
        if self.word(BROKEN).load(Ordering::Relaxed) != 0 {
            return Err(broken());
        }
        Ok(())
    }

    /// Takes the producers' or consumers' lock. A holder that died between messages left
    /// nothing half-done, so that is no error; one that died while it moved the counters left
    /// a record to finish from (checked here, by whoever takes the lock next: see
    /// [`Ring::settle`] and [`Ring::taken`]); one that died inside a streamed message, or
    /// with OS handles in flight, set BROKEN first.
    #[inline]
    pub(super) fn lock(&self, which: usize, deadline: Deadline) -> Result<bool> {
        let locked = match lock_word_until(&self.shared.region, self.word(which), deadline) {
            Err(Error::OwnerDied { .. }) => self.lock_after_death(which, deadline),
            other => other,
        }?;
        if locked && !self.left_in_order(which) {
            return self.clean_up(which);
        }
        Ok(locked)
    }

    /// Just after taking a lock: whether its last holder left everything in order, as a
    /// holder that did not die does: its stream and handle flags cleared, and TAIL and PUTS
    /// settled (see [`Ring::settle`]) or HEAD moved as its take recorded (see
    /// [`Ring::taken`]). (Every publication of a whole message counts it in PUTS before its
    /// header word is stored, and a streamed one sets WSTREAM first: so the header word at
    /// TAIL is not read here. It lies in the line a waiting consumer spins on, and reading it
    /// took that line away from the consumer once more for every message: issue 19, W8.)
    #[inline]
    pub(super) fn left_in_order(&self, which: usize) -> bool {
        let flags = if which == WLOCK {
            self.word(WSTREAM).load(Ordering::Relaxed) | self.word(WHANDLES).load(Ordering::Relaxed)
        } else {
            self.word(RSTREAM).load(Ordering::Relaxed) | self.word(RHANDLES).load(Ordering::Relaxed)
        };
        flags == 0
            && if which == WLOCK {
                let tail = self.word(TAIL).load(Ordering::Relaxed);
                let puts = self.word(PUTS).load(Ordering::Relaxed);
                self.pair(SETTLED).load(Ordering::Relaxed)
                    == u64::from(tail) | u64::from(puts) << 32
            } else {
                self.pair(TAKEN).load(Ordering::Relaxed) as u32
                    == self.word(HEAD).load(Ordering::Relaxed)
            }
    }

    /// The last holder of the lock just taken died inside a put or get (whoever takes the lock
    /// first after it gets here: the process that noticed the death frees the lock for all). A
    /// flag still set: it died inside a streamed message or with OS handles in flight, the
    /// ring is broken. Else its put or take is settled from what it recorded.
    #[cold]
    pub(super) fn clean_up(&self, which: usize) -> Result<bool> {
        let (streaming, handles) = if which == WLOCK {
            (WSTREAM, WHANDLES)
        } else {
            (RSTREAM, RHANDLES)
        };
        if self.word(streaming).load(Ordering::Relaxed) != 0
            || self.word(handles).load(Ordering::Relaxed) != 0
        {
            self.word(BROKEN).store(1, Ordering::Relaxed);
            self.unlock(which);
            return Err(broken());
        }
        if which == WLOCK {
            self.repair_tail();
        } else {
            let head = self.pair(TAKEN).load(Ordering::Relaxed) as u32;
            self.word(HEAD).store(head, Ordering::Release);
        }
        Ok(true)
    }

    /// [`Ring::lock`] after lock_word found the holder dead (and freed the lock).
    #[cold]
    pub(super) fn lock_after_death(&self, which: usize, deadline: Deadline) -> Result<bool> {
        let (streaming, handles) = if which == WLOCK {
            (WSTREAM, WHANDLES)
        } else {
            (RSTREAM, RHANDLES)
        };
        loop {
            // Dead inside a streamed message, or between handles and their message: the ring
            // and its side channel no longer agree.
            if self.word(streaming).load(Ordering::Relaxed) != 0
                || self.word(handles).load(Ordering::Relaxed) != 0
            {
                self.word(BROKEN).store(1, Ordering::Relaxed);
            }
            self.check_broken()?;
            match lock_word_until(&self.shared.region, self.word(which), deadline) {
                Err(Error::OwnerDied { .. }) => {}
                other => return other,
            }
        }
    }

    /// Adds one to a counter that only the holder of one lock writes.
    pub(super) fn bump(&self, which: usize) {
        let w = self.word(which);
        w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    pub(super) fn unlock(&self, which: usize) {
        let _ = unlock_word(&self.shared.region, self.word(which));
    }

    /// One of the 64-bit words (two header words that are only ever accessed as one).
    #[inline]
    pub(super) fn pair(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at.is_multiple_of(2) && at < HEADER_WORDS);
        // SAFETY: `at` is even and inside the header, which starts page-aligned, so the 8 bytes
        // are aligned and mapped as long as `self`; the two words at `at` are accessed only
        // through this (never as 32-bit words).
        unsafe { &*(self.base().add(at * 4) as *const AtomicU64) }
    }

    /// Producers' side: moves TAIL to `tail` (just past published messages, all counted in
    /// PUTS), then records the two together. TAIL and PUTS cannot move as one store (consumers
    /// read TAIL alone), so a producer may die with messages published but TAIL not moved, or
    /// PUTS counting one it had not yet published: [`Ring::repair_tail`] starts from this record.
    #[inline]
    pub(super) fn settle(&self, tail: u32) {
        self.word(TAIL).store(tail, Ordering::Release);
        fault(4);
        let puts = self.word(PUTS).load(Ordering::Relaxed);
        self.pair(SETTLED)
            .store(u64::from(tail) | u64::from(puts) << 32, Ordering::Relaxed);
    }

    /// After a producer died holding the producers' lock: from the last settled TAIL and PUTS,
    /// walks over the messages published after it (every header word past the last message
    /// reads 0: see [`Ring::write_whole`]) and settles TAIL and PUTS past them. A header that
    /// cannot be one the dead producer wrote breaks the ring.
    #[cold]
    pub(super) fn repair_tail(&self) {
        let settled = self.pair(SETTLED).load(Ordering::Relaxed);
        let (mut tail, mut puts) = (settled as u32, (settled >> 32) as u32);
        let cap = self.capacity();
        let start = tail;
        loop {
            let raw = self.header(tail).load(Ordering::Acquire);
            if raw == 0 {
                break;
            }
            let len = (raw & !CARRIES_HANDLES).wrapping_sub(1) as usize;
            let next = tail.wrapping_add(span(len) as u32);
            if len > LIMIT || !fits_whole(len, cap) || next.wrapping_sub(start) > cap {
                self.word(BROKEN).store(1, Ordering::Relaxed);
                return;
            }
            tail = next;
            puts = puts.wrapping_add(1);
        }
        self.word(PUTS).store(puts, Ordering::Release);
        self.settle(tail);
    }

    /// Consumers' side: the messages up to `head` are taken, `gets` in all: one store counts
    /// them (what `qsize` reads), then HEAD frees their space (what producers read). A consumer
    /// that dies before the first store leaves its messages in place, taken again by the next
    /// consumer; one that dies between the two has its HEAD moved by the next (see
    /// [`Ring::clean_up`]).
    #[inline]
    pub(super) fn taken(&self, head: u32, gets: u32) {
        self.pair(TAKEN)
            .store(u64::from(head) | u64::from(gets) << 32, Ordering::Release);
        fault(12);
        self.word(HEAD).store(head, Ordering::Release);
    }

    /// Sleeps on `word` (counted in `asleep`) until `ready()` or the deadline; spins first,
    /// unless the deadline has passed already (a look without a wait, as `get_nowait` or a
    /// pool reader's look at a worker that rang, costs no spin).
    pub(super) fn wait_for(
        &self,
        word: usize,
        asleep: usize,
        deadline: Deadline,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if deadline.passed() {
            return ready();
        }
        if spin_until(&mut ready) {
            return true;
        }
        loop {
            let seen = self.word(word).load(Ordering::SeqCst);
            self.word(asleep).fetch_add(1, Ordering::SeqCst);
            let now_ready = ready();
            if !now_ready {
                let left = deadline.remaining();
                if left != Some(Duration::ZERO) {
                    self.shared.region.wait(self.word(word), seen, left);
                }
            }
            self.word(asleep).fetch_sub(1, Ordering::SeqCst);
            if now_ready || ready() {
                return true;
            }
            if deadline.passed() {
                return false;
            }
        }
    }

    /// Wakes the sleepers on `word`, if any. Callers have published and then passed a full
    /// barrier (released their lock, or see [`Ring::wake_locked`]), so a sleeper either
    /// counted itself in `asleep` before this load, or sees what was published when it checks
    /// before sleeping.
    #[inline]
    pub(super) fn wake(&self, word: usize, asleep: usize) {
        if word == TAIL {
            if let Some(published) = &self.published {
                published();
            }
        }
        if self.word(asleep).load(Ordering::SeqCst) > 0 {
            self.shared.region.wake(self.word(word), u32::MAX);
            #[cfg(feature = "tokio")]
            self.wake_async();
        }
    }

    /// [`Ring::wake`] while still holding a lock (its release is not there yet as a barrier).
    pub(super) fn wake_locked(&self, word: usize, asleep: usize) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake(word, asleep);
    }

    /// The part of [`Ring::wake`] for async waiters: signals the wake-up channel if one is
    /// counted.
    #[cfg(feature = "tokio")]
    #[cold]
    #[inline(never)]
    fn wake_async(&self) {
        if self.word(ASYNC_WAITERS).load(Ordering::SeqCst) > 0 {
            if let Some(w) = &self.shared.wakeup {
                sys::wakeup_signal(&w.signal, &w.watched);
            }
        }
    }
}

/// Holds the producers' lock of a ring; releasing it (also when a `Serialize` impl panics while
/// it encodes into the ring) wakes the consumers.
pub(super) struct Producing<'a>(pub(super) &'a Ring);

impl Drop for Producing<'_> {
    fn drop(&mut self) {
        self.0.unlock(WLOCK);
        self.0.wake(TAIL, CONSUMERS_ASLEEP);
    }
}

/// Test-only fault points: the process dies here, as if killed, at the `DIE_HIT`-th time it
/// passes step `DIE_AT` of a put or get (see the tests of a killed producer or consumer).
#[cfg(test)]
pub(crate) static DIE_AT: AtomicU32 = AtomicU32::new(0);
#[cfg(test)]
pub(crate) static DIE_HIT: AtomicU32 = AtomicU32::new(1);

#[inline(always)]
pub(super) fn fault(_step: u32) {
    #[cfg(test)]
    if DIE_AT.load(Ordering::Relaxed) == _step && DIE_HIT.fetch_sub(1, Ordering::Relaxed) == 1 {
        sys::exit_now(86);
    }
}

#[cold]
pub(super) fn broken() -> Error {
    Error::state("the queue is broken: a process died in the middle of a message")
}
