//! Queues between processes: Python's `Queue`, `SimpleQueue` and `JoinableQueue`.
//!
//! A queue is a ring of bytes in shared memory plus a few counters: `put` encodes the value
//! straight into the ring's free space under a producers' lock and publishes it by storing the
//! message's header word; `get`, under a consumers' lock, sees that word in the cache line it
//! reads next, decodes the message in place and frees its space. Uncontended, neither makes a
//! system call; a side that must wait spins briefly, then sleeps in the kernel until the other
//! side wakes it.
//!
//! **Differences from Python, on purpose.**
//! - `put` is synchronous: a value that cannot be encoded fails *at `put`* (Python drops it in a
//!   background thread), and when `put` returns, the message is in the queue's shared memory,
//!   not in a buffer of the putting process. So a process can exit the moment after `put`, and
//!   Python's "joining processes that use queues" deadlock cannot happen: a child that puts
//!   10 MB and returns exits at once, and the data waits in the queue for the reader. The price
//!   is that the unread data must fit the queue's byte capacity ([`Queue::with_capacity`],
//!   64 MiB by default; memory is only committed as it is used). When it does not, `put` waits
//!   for a reader, bounded by its timeout; nothing is ever dropped silently.
//!   [`join_thread`](Queue::join_thread) and [`cancel_join_thread`](Queue::cancel_join_thread)
//!   exist for porting and have nothing to wait for.
//! - Queues are typed: `Queue<T>` carries `T`s (any serde type).
//! - A queue, like a lock, can travel to a child as a `Process` argument (Python: only by
//!   inheritance). On Unix, values put in a queue may carry OS handles (a `Lock`, a
//!   `Connection`, another `Queue`: Python refuses them): the handles travel in a side channel
//!   of the queue (a datagram socket pair) and arrive with the value, even if their sender has
//!   exited. On Windows, and through `put_many`, such values are refused with a clear error.
//! - A message longer than the capacity is streamed through the ring; once it has started,
//!   its `put` (and the `get` reading it) wait for the other side beyond their timeouts.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synchronize::{Deadline, lock_word, unlock_word};
use crate::sys::{self, Region};
use crate::wire;

/// Default byte capacity of a queue's ring.
const DEFAULT_CAPACITY: usize = 64 << 20;
/// Smallest capacity accepted.
const MIN_CAPACITY: usize = 4096;
/// Header words (512 bytes) before the ring. Fields producers and consumers write sit on
/// separate cache lines.
const HEADER_WORDS: usize = 128;
const CAPACITY: usize = 0; // ring bytes (a power of two)
const MAXSIZE: usize = 1; // Python's maxsize; 0 = unbounded
const BROKEN: usize = 2; // 1 once a process died in the middle of a message
const WSTREAM: usize = 3; // 1 while a producer streams a message longer than the ring
const RSTREAM: usize = 4; // 1 while a consumer reads one
const WHANDLES: usize = 5; // 1 while a producer sends a message's handles and publishes it
const RHANDLES: usize = 6; // 1 while a consumer takes a message's handles and frees it
/// Set in a message's header word when its OS handles wait in the side channel; the payload
/// then starts with their count (4 bytes, little-endian).
const CARRIES_HANDLES: u32 = 1 << 31;
const WLOCK: usize = 16; // producers' lock word
const TAIL: usize = 32; // bytes written and published (wrapping)
const PUTS: usize = 33; // messages put (wrapping)
const HEAD_SEEN: usize = 34; // HEAD as producers last read it (never ahead of HEAD)
/// Words 36-37, one 64-bit word: TAIL and PUTS as the last producer settled them together
/// (see [`Ring::settle`]); a producer that died after it published messages but before it
/// moved TAIL is repaired from there.
const SETTLED: usize = 36;
const RLOCK: usize = 48; // consumers' lock word
const HEAD: usize = 64; // bytes consumed (wrapping)
const TAIL_SEEN: usize = 66; // TAIL as consumers last read it (never ahead of TAIL)
/// Words 68-69, one 64-bit word: HEAD as the last consumer's take moves it, and the messages
/// taken in all (wrapping), stored as the take's one decisive step (see [`Ring::taken`]).
const TAKEN: usize = 68;
const CONSUMERS_ASLEEP: usize = 80;
const PRODUCERS_ASLEEP: usize = 81;
const UNFINISHED: usize = 96; // JoinableQueue: put and not yet task_done
const JOINERS_ASLEEP: usize = 97;
/// How long a waiting side spins before sleeping.
const SPIN: Duration = Duration::from_micros(20);
/// How often a reader stuck inside a message checks that its writer is alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(50);
/// Largest message accepted (as `Connection`'s default limit).
const LIMIT: usize = wire::DEFAULT_LIMIT as usize;

/// The shared part of every queue: the ring and its counters.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ring {
    region: Arc<Region>,
    /// Where the OS handles inside messages travel (Unix; `None` for the pool's rings and on
    /// Windows).
    side: Option<Arc<Side>>,
}

/// A queue's side channel: a pair of datagram sockets every handle to the queue holds. A
/// producer sends a message's handles there (under the producers' lock) just before it
/// publishes the message; the consumer that takes the message receives them, in the same
/// order. Handles in flight live in the socket, so their sender may exit at once.
struct Side {
    send: sys::OwnedHandle,
    recv: sys::OwnedHandle,
}

impl Serialize for Side {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let send = self.send.try_clone().map_err(S::Error::custom)?;
        let recv = self.recv.try_clone().map_err(S::Error::custom)?;
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
///
/// Between rounds it yields the CPU: when the other side runs on this same CPU, spinning
/// cannot help it, and yielding lets it run at once.
fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
        std::thread::yield_now();
    }
}

/// The bytes a message of `len` bytes takes in the ring: its header word, the bytes, and
/// padding to the next multiple of 4 (where the next header word goes).
fn span(len: usize) -> u64 {
    (len as u64 + 7) & !3
}

/// Whether a message of `len` bytes is published whole (its span and the zeroed word after it
/// fit the ring), rather than streamed.
fn fits_whole(len: usize, cap: u32) -> bool {
    span(len) + 4 <= cap as u64
}

/// A header word: the message's length plus one (never 0, which means "nothing here yet"),
/// and `flags`.
fn header_word(len: usize, flags: u32) -> u32 {
    (len as u32 + 1) | flags
}

impl Ring {
    /// A ring whose messages may carry OS handles where the platform allows it (Unix).
    fn with_side_channel(capacity: usize, maxsize: u32) -> Result<Ring> {
        let mut ring = Ring::new(capacity, maxsize)?;
        ring.side = sys::handle_channel()
            .ok()
            .map(|(send, recv)| Arc::new(Side { send, recv }));
        Ok(ring)
    }

    pub(crate) fn new(capacity: usize, maxsize: u32) -> Result<Ring> {
        if !(MIN_CAPACITY..=1 << 31).contains(&capacity) {
            return Err(Error::InvalidArgument(format!(
                "a queue's capacity must be between {MIN_CAPACITY} bytes and 2 GiB, not {capacity}"
            )));
        }
        let capacity = capacity.next_power_of_two();
        let region = Region::new(HEADER_WORDS * 4 + capacity)
            .map_err(|e| Error::io("creating a queue's shared memory", e))?;
        let ring = Ring {
            region: Arc::new(region),
            side: None,
        };
        ring.word(CAPACITY)
            .store(capacity as u32, Ordering::Relaxed);
        ring.word(MAXSIZE).store(maxsize, Ordering::Relaxed);
        Ok(ring)
    }

    #[inline]
    fn word(&self, i: usize) -> &AtomicU32 {
        assert!(i < HEADER_WORDS);
        // SAFETY: the region (page-aligned, so 4-byte aligned) starts with HEADER_WORDS words
        // and lives as long as `self`; `i` is one of the constants above (the assertion folds
        // away).
        unsafe { &*(self.region.base() as *const AtomicU32).add(i) }
    }

    fn capacity(&self) -> u32 {
        self.word(CAPACITY).load(Ordering::Relaxed)
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the region is HEADER_WORDS * 4 + capacity bytes long.
        unsafe { self.region.base().add(HEADER_WORDS * 4) }
    }

    /// The header word of the message at position `at` (a multiple of 4): 0 until a producer
    /// publishes a message there (see [`Ring::write_whole`]).
    fn header(&self, at: u32) -> &AtomicU32 {
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
    fn copy_in(&self, at: u32, bytes: &[u8]) {
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
    fn copy_out(&self, at: u32, out: &mut [u8]) {
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
    fn contiguous(&self, at: u32, len: usize) -> Option<&[u8]> {
        let cap = self.capacity() as usize;
        let start = at as usize & (cap - 1);
        // SAFETY: `start + len <= cap` keeps the slice inside the ring; the bytes are a
        // published message that nobody writes while the consumers' lock is held (see above).
        (start + len <= cap)
            .then(|| unsafe { std::slice::from_raw_parts(self.data().add(start), len) })
    }

    /// Copies `len` bytes out of the ring from position `at` into a new vector (not zeroed
    /// first: large messages would pay for the zeroing twice).
    fn copy_out_new(&self, at: u32, len: usize) -> Vec<u8> {
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
    fn read_message<R>(&self, start: u32, len: usize, f: impl FnOnce(Cow<'_, [u8]>) -> R) -> R {
        match self.contiguous(start, len) {
            Some(bytes) => f(Cow::Borrowed(bytes)),
            None => f(Cow::Owned(self.copy_out_new(start, len))),
        }
    }

    fn used(&self) -> u32 {
        self.word(TAIL)
            .load(Ordering::Acquire)
            .wrapping_sub(self.word(HEAD).load(Ordering::Acquire))
    }

    /// Producers' side (under their lock): whether `need` bytes are free. Asks the
    /// consumers' HEAD only when the copy last read is not enough, so that a producer running
    /// ahead does not pull the consumers' cache line over once per message.
    fn room(&self, need: u32) -> bool {
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
    fn published(&self, need: u32) -> bool {
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
    fn gets(&self, order: Ordering) -> u32 {
        (self.pair(TAKEN).load(order) >> 32) as u32
    }

    /// The messages in the ring, as `qsize` reports them: a producer found dead holding its
    /// lock (it may have counted a message it had not published) is repaired first.
    fn count(&self) -> u32 {
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

    fn items(&self) -> u32 {
        // Taken first: every message counted there was counted in PUTS before it was
        // published, so PUTS read afterwards is never behind.
        let gets = self.gets(Ordering::Acquire);
        let puts = self.word(PUTS).load(Ordering::Acquire);
        puts.wrapping_sub(gets).min(i32::MAX as u32)
    }

    #[inline]
    fn check_broken(&self) -> Result<()> {
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
    fn lock(&self, which: usize, deadline: Deadline) -> Result<bool> {
        let locked = match lock_word(&self.region, self.word(which), true, deadline.remaining()) {
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
    /// [`Ring::taken`]).
    #[inline]
    fn left_in_order(&self, which: usize) -> bool {
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
                    && self.header(tail).load(Ordering::Relaxed) == 0
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
    fn clean_up(&self, which: usize) -> Result<bool> {
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
    fn lock_after_death(&self, which: usize, deadline: Deadline) -> Result<bool> {
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
            match lock_word(&self.region, self.word(which), true, deadline.remaining()) {
                Err(Error::OwnerDied { .. }) => {}
                other => return other,
            }
        }
    }

    /// Adds one to a counter that only the holder of one lock writes.
    fn bump(&self, which: usize) {
        let w = self.word(which);
        w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    fn unlock(&self, which: usize) {
        let _ = unlock_word(&self.region, self.word(which));
    }

    /// One of the 64-bit words (two header words that are only ever accessed as one).
    #[inline]
    fn pair(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at.is_multiple_of(2) && at < HEADER_WORDS);
        // SAFETY: `at` is even and inside the header, which starts page-aligned, so the 8 bytes
        // are aligned and mapped as long as `self`; the two words at `at` are accessed only
        // through this (never as 32-bit words).
        unsafe { &*(self.region.base().add(at * 4) as *const AtomicU64) }
    }

    /// Producers' side: moves TAIL to `tail` (just past published messages, all counted in
    /// PUTS), then records the two together. TAIL and PUTS cannot move as one store (consumers
    /// read TAIL alone), so a producer may die with messages published but TAIL not moved, or
    /// PUTS counting one it had not yet published: [`Ring::repair_tail`] starts from this record.
    #[inline]
    fn settle(&self, tail: u32) {
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
    fn repair_tail(&self) {
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
    fn taken(&self, head: u32, gets: u32) {
        self.pair(TAKEN)
            .store(u64::from(head) | u64::from(gets) << 32, Ordering::Release);
        fault(12);
        self.word(HEAD).store(head, Ordering::Release);
    }

    /// Sleeps on `word` (counted in `asleep`) until `ready()` or the deadline; spins first.
    fn wait_for(
        &self,
        word: usize,
        asleep: usize,
        deadline: Deadline,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
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
                    self.region.wait(self.word(word), seen, left);
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
    fn wake(&self, word: usize, asleep: usize) {
        if self.word(asleep).load(Ordering::SeqCst) > 0 {
            self.region.wake(self.word(word), u32::MAX);
        }
    }

    /// [`Ring::wake`] while still holding a lock (its release is not there yet as a barrier).
    fn wake_locked(&self, word: usize, asleep: usize) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake(word, asleep);
    }

    /// Producers' side, with the room checked (`span(len) + 4` bytes free at `tail`): writes a
    /// whole message made of `parts` (`len` bytes in all) and publishes it to consumers; returns
    /// where the next message goes. The caller then moves TAIL there.
    ///
    /// Consumers learn of a message from its header word, in the cache line they read next
    /// anyway, not from TAIL (a line that would otherwise move between the CPUs once per
    /// message). For that, the word where the next message will go must read 0 until it is
    /// published there: it is zeroed here, before this message's header is stored with release.
    /// (A fresh ring is all zeros; other bytes of the free space may hold anything.)
    fn write_whole(&self, tail: u32, parts: &[&[u8]], len: usize, flags: u32) -> u32 {
        let mut at = tail.wrapping_add(4);
        for part in parts {
            self.copy_in(at, part);
            at = at.wrapping_add(part.len() as u32);
        }
        self.finish_whole(tail, len, flags)
    }

    /// [`Ring::write_whole`] once the message's bytes are in place.
    fn finish_whole(&self, tail: u32, len: usize, flags: u32) -> u32 {
        let end = tail.wrapping_add(span(len) as u32);
        self.header(end).store(0, Ordering::Relaxed);
        fault(1);
        self.bump(PUTS);
        fault(2);
        self.header(tail)
            .store(header_word(len, flags), Ordering::Release);
        fault(3);
        end
    }

    /// Encodes `value` straight into the free space and publishes it, under the producers'
    /// lock (no copy through a buffer). `Ok(Some(false))`: the deadline passed first.
    /// `Ok(None)`: nothing was put, take the general path, which encodes first and reports
    /// encoding errors: the value carries OS handles (they need the side channel), does not
    /// fit the free space before the ring's end, or fails to encode.
    fn put_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Deadline,
    ) -> Result<Option<bool>> {
        self.check_broken()?;
        if !self.lock(WLOCK, deadline)? {
            return Ok(Some(false));
        }
        let _locked = Producing(self);
        let maxsize = self.word(MAXSIZE).load(Ordering::Relaxed);
        if maxsize != 0
            && !self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.items() < maxsize)
        {
            return Ok(Some(false));
        }
        let (tail, room) = self.free_space();
        let Some(len) = self.encode_at(tail, room, value) else {
            return Ok(None);
        };
        let end = self.finish_whole(tail, len, 0);
        self.settle(end);
        Ok(Some(true))
    }

    /// Under the producers' lock: where the next message goes and how many bytes are free
    /// from there. Asks the consumers' HEAD only when the copy last read leaves less than half
    /// the ring.
    fn free_space(&self) -> (u32, usize) {
        let cap = self.capacity();
        let tail = self.word(TAIL).load(Ordering::Relaxed);
        let free = |head: u32| cap.saturating_sub(tail.wrapping_sub(head)) as usize;
        let room = free(self.word(HEAD_SEEN).load(Ordering::Relaxed));
        if room >= cap as usize / 2 {
            return (tail, room);
        }
        let head = self.word(HEAD).load(Ordering::Acquire);
        self.word(HEAD_SEEN).store(head, Ordering::Relaxed);
        (tail, free(head))
    }

    /// Under the producers' lock: encodes `value` as the bytes of a message at `at` (a
    /// position of free space, `room` bytes of which are free), leaving its header word alone;
    /// returns its length. `None` (nothing published): it does not fit `room` with its header,
    /// padding and the word after it, or before the ring's end, or does not encode. (The
    /// queues' hot path: one stretch, a pointer compare per byte.)
    fn encode_at<T: Serialize + ?Sized>(&self, at: u32, room: usize, value: &T) -> Option<usize> {
        let cap = self.capacity() as usize;
        let start = (at as usize & (cap - 1)) + 4;
        let limit = room
            .saturating_sub(11)
            .min(cap.saturating_sub(start))
            .min(LIMIT);
        // SAFETY: `start + limit <= cap`, so the writer stays inside the ring; those bytes are
        // free space that only the holder of the producers' lock writes (consumers read the
        // header word at `at` at most, which is before `start`).
        let begin = unsafe { self.data().add(start) };
        let writer = Stretch {
            at: begin,
            end: unsafe { begin.add(limit) },
        };
        let end = wire::encode_with_flavor(value, writer).ok()?;
        Some(end as usize - begin as usize)
    }

    /// Encodes `prefix` and then `value` as one message straight into the space free now and
    /// publishes it (no copy through a buffer). `Ok(false)`: nothing was put, take the general
    /// path: the message does not fit the free space, carries OS handles, or does not encode.
    pub(crate) fn put_encoded<T: Serialize + ?Sized>(
        &self,
        prefix: &[u8],
        value: &T,
    ) -> Result<bool> {
        self.check_broken()?;
        self.lock(WLOCK, Deadline::after(None))?;
        let _locked = Producing(self);
        let (tail, room) = self.free_space();
        let limit = room.saturating_sub(11).min(LIMIT);
        let mut writer = RingWriter::new(self, tail as usize + 4, limit);
        if postcard::ser_flavors::Flavor::try_extend(&mut writer, prefix).is_err() {
            return Ok(false);
        }
        let Ok(len) = wire::encode_with_flavor(value, writer) else {
            return Ok(false);
        };
        let end = self.finish_whole(tail, len, 0);
        self.settle(end);
        Ok(true)
    }

    /// [`Ring::put_value`] for several values, all published at once (the first one's header
    /// word is stored last). `Ok(false)`: nothing was put, take the general path (a value
    /// does not encode or carries handles, the batch does not fit the free space before the
    /// ring's end, or the queue is bounded).
    fn put_values<T: Serialize>(&self, values: &[&T]) -> Result<bool> {
        let Some((first, rest)) = values.split_first() else {
            return Ok(true);
        };
        if self.word(MAXSIZE).load(Ordering::Relaxed) != 0 {
            return Ok(false);
        }
        self.check_broken()?;
        self.lock(WLOCK, Deadline::after(None))?;
        let _locked = Producing(self);
        let (tail, mut room) = self.free_space();
        let Some(first_len) = self.encode_at(tail, room, *first) else {
            return Ok(false);
        };
        let mut at = tail.wrapping_add(span(first_len) as u32);
        room -= span(first_len) as usize;
        for value in rest {
            let Some(len) = self.encode_at(at, room, *value) else {
                return Ok(false);
            };
            // Not visible yet: consumers stop at the first message's header word, still 0.
            self.header(at)
                .store(header_word(len, 0), Ordering::Relaxed);
            at = at.wrapping_add(span(len) as u32);
            room -= span(len) as usize;
        }
        self.header(at).store(0, Ordering::Relaxed);
        let puts = self.word(PUTS).load(Ordering::Relaxed);
        self.word(PUTS)
            .store(puts.wrapping_add(values.len() as u32), Ordering::Release);
        fault(5);
        self.header(tail)
            .store(header_word(first_len, 0), Ordering::Release);
        fault(6);
        self.settle(at);
        Ok(true)
    }

    /// Appends one message. `Ok(false)`: the deadline passed first (Python's `Full`).
    pub(crate) fn put(&self, message: &[u8], deadline: Deadline) -> Result<bool> {
        self.put_parts(&[message], deadline, &|| false)
    }

    /// Appends one message made of `parts`, without joining them first. A message longer than
    /// the ring, once started, waits for the reader past the deadline; `abandon()` is asked
    /// now and then whether the reader is gone (the ring is then broken).
    pub(crate) fn put_parts(
        &self,
        parts: &[&[u8]],
        deadline: Deadline,
        abandon: &dyn Fn() -> bool,
    ) -> Result<bool> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > LIMIT {
            return Err(Error::InvalidArgument(format!(
                "a {len}-byte message is larger than a queue carries ({LIMIT} bytes)"
            )));
        }
        self.check_broken()?;
        if !self.lock(WLOCK, deadline)? {
            return Ok(false);
        }
        let done = self.put_locked(parts, len, deadline, abandon);
        self.unlock(WLOCK);
        self.wake(TAIL, CONSUMERS_ASLEEP);
        done
    }

    /// Appends one message whose OS `handles` travel in the side channel.
    fn put_with_handles(
        &self,
        message: &[u8],
        handles: Vec<sys::OwnedHandle>,
        deadline: Deadline,
    ) -> Result<bool> {
        let Some(side) = &self.side else {
            return Err(no_handles());
        };
        let cap = self.capacity();
        let len = message.len() + 4;
        if handles.len() > sys::HANDLES_PER_DATAGRAM || !fits_whole(len, cap) {
            return Err(Error::InvalidArgument(format!(
                "a value carrying {} OS handles in {} bytes does not fit this queue (at most {} \
                 handles, and the ring's {cap} bytes)",
                handles.len(),
                message.len(),
                sys::HANDLES_PER_DATAGRAM
            )));
        }
        let need = span(len) as u32 + 4;
        self.check_broken()?;
        if !self.lock(WLOCK, deadline)? {
            return Ok(false);
        }
        let maxsize = self.word(MAXSIZE).load(Ordering::Relaxed);
        let room = (maxsize == 0
            || self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.items() < maxsize))
            && self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.room(need));
        let mut outcome = Ok(room);
        if room {
            let count = handles.len() as u32;
            self.word(WHANDLES).store(1, Ordering::Relaxed);
            match sys::send_handles_datagram(&side.send, handles) {
                Ok(()) => {
                    let tail = self.word(TAIL).load(Ordering::Relaxed);
                    let parts = [&count.to_le_bytes()[..], message];
                    let end = self.write_whole(tail, &parts, len, CARRIES_HANDLES);
                    self.settle(end);
                }
                Err(e) => {
                    outcome = Err(Error::io(
                        "sending a value's OS handles through a queue (too many in flight?)",
                        e,
                    ))
                }
            }
            self.word(WHANDLES).store(0, Ordering::Relaxed);
        }
        self.unlock(WLOCK);
        self.wake(TAIL, CONSUMERS_ASLEEP);
        outcome
    }

    /// Appends several messages under one acquisition of the producers' lock, waiting for
    /// room as long as it takes (messages longer than the ring go through [`Ring::put`]).
    pub(crate) fn put_many(&self, messages: &[&[u8]]) -> Result<()> {
        self.check_broken()?;
        self.lock(WLOCK, Deadline::after(None))?;
        let outcome = self.put_many_locked(messages);
        self.unlock(WLOCK);
        self.wake(TAIL, CONSUMERS_ASLEEP);
        outcome
    }

    /// Writes the messages one after another (each is published by its header word as it is
    /// written) and moves TAIL once for them all; when the ring is full, moves TAIL, wakes the
    /// consumers and waits for room. TAIL is also settled before the messages written since it
    /// last was would span more than half the ring: so those a repair walks over (see
    /// [`Ring::repair_tail`]) are never overwritten by the same producer's later ones, whatever
    /// the consumers took meanwhile.
    fn put_many_locked(&self, messages: &[&[u8]]) -> Result<()> {
        let cap = self.capacity();
        let maxsize = self.word(MAXSIZE).load(Ordering::Relaxed);
        let mut tail = self.word(TAIL).load(Ordering::Relaxed);
        let mut settled = tail;
        let mut head = self.word(HEAD_SEEN).load(Ordering::Relaxed);
        for m in messages {
            if m.len() > LIMIT || !fits_whole(m.len(), cap) {
                // Longer than the ring: streamed on its own.
                self.settle(tail);
                self.put_locked(&[m], m.len(), Deadline::after(None), &|| false)?;
                tail = self.word(TAIL).load(Ordering::Relaxed);
                settled = tail;
                head = self.word(HEAD).load(Ordering::Acquire);
                continue;
            }
            let need = span(m.len()) as u32 + 4;
            if u64::from(tail.wrapping_sub(settled)) + u64::from(need) > u64::from(cap / 2) {
                self.settle(tail);
                settled = tail;
            }
            let full = |head: u32| {
                cap.checked_sub(tail.wrapping_sub(head))
                    .is_none_or(|free| free < need)
                    || (maxsize != 0
                        && self
                            .word(PUTS)
                            .load(Ordering::Relaxed)
                            .wrapping_sub(self.gets(Ordering::Acquire))
                            >= maxsize)
            };
            if full(head) {
                head = self.word(HEAD).load(Ordering::Acquire);
            }
            if full(head) {
                self.settle(tail);
                settled = tail;
                self.wake_locked(TAIL, CONSUMERS_ASLEEP);
                self.wait_for(HEAD, PRODUCERS_ASLEEP, Deadline::after(None), || {
                    !full(self.word(HEAD).load(Ordering::Acquire))
                });
                head = self.word(HEAD).load(Ordering::Acquire);
            }
            tail = self.write_whole(tail, &[m], m.len(), 0);
            fault(7);
        }
        self.word(HEAD_SEEN).store(head, Ordering::Relaxed);
        self.settle(tail);
        Ok(())
    }

    fn put_locked(
        &self,
        parts: &[&[u8]],
        len: usize,
        deadline: Deadline,
        abandon: &dyn Fn() -> bool,
    ) -> Result<bool> {
        let maxsize = self.word(MAXSIZE).load(Ordering::Relaxed);
        if maxsize != 0
            && !self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.items() < maxsize)
        {
            return Ok(false);
        }
        let cap = self.capacity();
        let tail = self.word(TAIL).load(Ordering::Relaxed);
        if fits_whole(len, cap) {
            let need = span(len) as u32 + 4;
            if !self.room(need)
                && !self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.room(need))
            {
                return Ok(false);
            }
            let end = self.write_whole(tail, parts, len, 0);
            self.settle(end);
            return Ok(true);
        }
        let joined;
        let message: &[u8] = match parts {
            [one] => one,
            _ => {
                joined = parts.concat();
                &joined
            }
        };
        // Longer than the ring: stream it, publishing each chunk by TAIL as it is written. The
        // last chunk goes with the padding and the zeroed word after the message (see
        // `write_whole`), so the last part (`last` bytes at most) waits for room for all that.
        if !self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || self.room(4)) {
            return Ok(false);
        }
        let end_extra = (span(len) - 4 - len as u64) as usize + 4;
        let last = cap as usize / 2 - end_extra;
        self.word(WSTREAM).store(1, Ordering::Relaxed);
        self.header(tail)
            .store(header_word(len, 0), Ordering::Release);
        let mut at = tail.wrapping_add(4);
        self.word(TAIL).store(at, Ordering::Release);
        self.wake_locked(TAIL, CONSUMERS_ASLEEP);
        let mut rest = message;
        while !rest.is_empty() {
            let want = if rest.len() <= last {
                (rest.len() + end_extra) as u32
            } else {
                1
            };
            let room = Deadline::after(Some(LIVENESS_CHECK));
            if !self.wait_for(HEAD, PRODUCERS_ASLEEP, room, || self.room(want)) {
                if abandon() {
                    self.word(BROKEN).store(1, Ordering::Relaxed);
                    return Err(Error::state("the reader of this message is gone"));
                }
                continue;
            }
            let free = (cap - self.used()) as usize;
            if rest.len() + end_extra <= free {
                self.copy_in(at, rest);
                let end = tail.wrapping_add(span(len) as u32);
                self.header(end).store(0, Ordering::Relaxed);
                self.bump(PUTS);
                self.word(WSTREAM).store(0, Ordering::Relaxed);
                self.settle(end);
                self.wake_locked(TAIL, CONSUMERS_ASLEEP);
                break;
            }
            let n = free.min(rest.len() - last.min(rest.len()));
            if n == 0 {
                continue;
            }
            self.copy_in(at, &rest[..n]);
            at = at.wrapping_add(n as u32);
            rest = &rest[n..];
            self.word(TAIL).store(at, Ordering::Release);
            self.wake_locked(TAIL, CONSUMERS_ASLEEP);
        }
        Ok(true)
    }

    /// Takes the next message and hands it to `f`: borrowed straight from the ring when it
    /// lies there in one piece (decoding it in place saves a copy), else assembled.
    pub(crate) fn get_with<R>(
        &self,
        deadline: Deadline,
        f: impl FnOnce(Cow<'_, [u8]>) -> R,
    ) -> Result<Option<R>> {
        self.check_broken()?;
        if !self.lock(RLOCK, deadline)? {
            return Ok(None);
        }
        let got = self.get_locked(deadline, f);
        self.unlock(RLOCK);
        self.wake(HEAD, PRODUCERS_ASLEEP);
        got
    }

    /// Takes up to `max` messages under one acquisition of the consumers' lock: waits until
    /// the first arrives (or the deadline passes), then takes what is already there.
    pub(crate) fn get_many_with<R>(
        &self,
        max: usize,
        deadline: Deadline,
        mut f: impl FnMut(Cow<'_, [u8]>) -> R,
    ) -> Result<Vec<R>> {
        self.check_broken()?;
        let mut out = Vec::new();
        if max == 0 || !self.lock(RLOCK, deadline)? {
            return Ok(out);
        }
        // The first message as `get` takes it (it may have to wait, or be streamed) ...
        let first = self.get_locked(deadline, &mut f);
        let failed = match first {
            Ok(Some(r)) => {
                out.push(r);
                None
            }
            Ok(None) => None,
            Err(e) => Some(e),
        };
        // ... then whole messages already published, freed together at the end.
        if failed.is_none() && !out.is_empty() {
            let cap = self.capacity();
            let mut head = self.word(HEAD).load(Ordering::Relaxed);
            let mut gets = self.gets(Ordering::Relaxed);
            while out.len() < max {
                let raw = self.header(head).load(Ordering::Acquire);
                let len = raw.wrapping_sub(1) as usize;
                if raw == 0 || raw & CARRIES_HANDLES != 0 || !fits_whole(len, cap) {
                    // Nothing more yet, or streamed, or carrying handles: left for the next
                    // call.
                    break;
                }
                out.push(self.read_message(head.wrapping_add(4), len, &mut f));
                head = head.wrapping_add(span(len) as u32);
                gets = gets.wrapping_add(1);
            }
            self.taken(head, gets);
        }
        self.unlock(RLOCK);
        self.wake(HEAD, PRODUCERS_ASLEEP);
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Takes a message whose handles wait in the side channel (`len` counts their 4-byte
    /// count and the value), and decodes it with them.
    fn get_with_handles<R>(
        &self,
        head: u32,
        len: usize,
        f: impl FnOnce(Cow<'_, [u8]>) -> R,
    ) -> Result<Option<R>> {
        let broken = || {
            self.word(BROKEN).store(1, Ordering::Relaxed);
            Error::state("the queue is broken: a message's OS handles are missing")
        };
        let Some(side) = &self.side else {
            return Err(broken());
        };
        if len < 4 || !fits_whole(len, self.capacity()) {
            return Err(broken());
        }
        let mut count = [0u8; 4];
        self.copy_out(head.wrapping_add(4), &mut count);
        let count = u32::from_le_bytes(count) as usize;
        self.word(RHANDLES).store(1, Ordering::Relaxed);
        let handles = sys::recv_handles_datagram(&side.recv, count).map_err(|_| broken())?;
        let out = wire::with_handles(handles, || {
            self.read_message(head.wrapping_add(8), len - 4, f)
        });
        let gets = self.gets(Ordering::Relaxed).wrapping_add(1);
        self.taken(head.wrapping_add(span(len) as u32), gets);
        self.word(RHANDLES).store(0, Ordering::Relaxed);
        Ok(Some(out))
    }

    fn get_locked<R>(
        &self,
        deadline: Deadline,
        f: impl FnOnce(Cow<'_, [u8]>) -> R,
    ) -> Result<Option<R>> {
        let head = self.word(HEAD).load(Ordering::Relaxed);
        let word = self.header(head);
        let mut raw = word.load(Ordering::Acquire);
        if raw == 0
            && !self.wait_for(TAIL, CONSUMERS_ASLEEP, deadline, || {
                raw = word.load(Ordering::Acquire);
                raw != 0
            })
        {
            return Ok(None);
        }
        if raw & CARRIES_HANDLES != 0 {
            let len = (raw & !CARRIES_HANDLES).wrapping_sub(1) as usize;
            return self.get_with_handles(head, len, f);
        }
        let len = raw as usize - 1;
        if len > LIMIT {
            self.word(BROKEN).store(1, Ordering::Relaxed);
            return Err(Error::Codec(format!(
                "a queue message announces {len} bytes, more than the {LIMIT}-byte limit"
            )));
        }
        if fits_whole(len, self.capacity()) {
            // A message that fits was published whole.
            let out = self.read_message(head.wrapping_add(4), len, f);
            fault(11);
            let gets = self.gets(Ordering::Relaxed).wrapping_add(1);
            self.taken(head.wrapping_add(span(len) as u32), gets);
            return Ok(Some(out));
        }
        // A streamed message: take it chunk by chunk as TAIL publishes it, freeing space as we
        // go (the padding after it comes with its last chunk).
        let mut message = vec![0u8; len];
        self.word(RSTREAM).store(1, Ordering::Relaxed);
        let mut at = head.wrapping_add(4);
        self.word(HEAD).store(at, Ordering::Release);
        let mut filled = 0;
        while filled < len {
            if !self.wait_for(
                TAIL,
                CONSUMERS_ASLEEP,
                Deadline::after(Some(LIVENESS_CHECK)),
                || self.published(1),
            ) {
                // The writer is read first: one that finished and let go published the rest
                // before (its unlock releases, this load acquires), so the rest is seen below.
                // (Reading it after, a writer finishing right then looked dead: a streamed
                // reply was taken for broken under Wine's slow scheduling.)
                let writer = self.word(WLOCK).load(Ordering::Acquire) & !(1 << 31);
                if self.published(1) {
                    continue;
                }
                if writer == 0 || !sys::process_alive(writer) {
                    self.word(BROKEN).store(1, Ordering::Relaxed);
                    return Err(broken());
                }
                continue;
            }
            let n = (self.used() as usize).min(len - filled);
            self.copy_out(at, &mut message[filled..filled + n]);
            filled += n;
            at = at.wrapping_add(n as u32);
            if filled == len {
                let gets = self.gets(Ordering::Relaxed).wrapping_add(1);
                self.taken(head.wrapping_add(span(len) as u32), gets);
                self.word(RSTREAM).store(0, Ordering::Relaxed);
            } else {
                self.word(HEAD).store(at, Ordering::Release);
            }
            self.wake_locked(HEAD, PRODUCERS_ASLEEP);
        }
        Ok(Some(f(Cow::Owned(message))))
    }
}

/// Holds the producers' lock of a ring; releasing it (also when a `Serialize` impl panics while
/// it encodes into the ring) wakes the consumers.
struct Producing<'a>(&'a Ring);

impl Drop for Producing<'_> {
    fn drop(&mut self) {
        self.0.unlock(WLOCK);
        self.0.wake(TAIL, CONSUMERS_ASLEEP);
    }
}

/// Where [`Ring::put_value`] encodes: the free bytes `at..end` of a ring, in one stretch. (The
/// queues' hot path keeps this writer of its own: [`RingWriter`] limited to one stretch made a
/// 64-byte `put`/`get` 10-25% slower on one CPU and up to 2x slower across CPUs in W3, measured
/// old against new binary, interleaved.)
struct Stretch {
    at: *mut u8,
    end: *mut u8,
}

impl postcard::ser_flavors::Flavor for Stretch {
    /// Where the encoding ended.
    type Output = *mut u8;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.at == self.end {
            return Err(postcard::Error::SerializeBufferFull);
        }
        // SAFETY: `at < end`, and `at..end` is free space of the ring that only this writer
        // (under the producers' lock) writes (see `Ring::encode_at`).
        unsafe {
            self.at.write(byte);
            self.at = self.at.add(1);
        }
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if (self.end as usize - self.at as usize) < bytes.len() {
            return Err(postcard::Error::SerializeBufferFull);
        }
        // SAFETY: as in `try_push`: `bytes.len()` bytes fit between `at` and `end`; `bytes` is
        // the serializer's own data, not ring memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.at, bytes.len());
            self.at = self.at.add(bytes.len());
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<*mut u8> {
        Ok(self.at)
    }
}

/// Where [`Ring::put_encoded`] encodes (a message of any size the free space holds, as a pool
/// worker's large reply): free bytes of a ring, in at most two stretches (the second at the
/// ring's start, when the free space wraps around its end). Each byte is a pointer compare and
/// store; only the end of a stretch takes a branch out of line.
struct RingWriter {
    at: *mut u8,
    /// The end of the stretch being written.
    end: *mut u8,
    /// Where it began, and the bytes written before it.
    begin: *mut u8,
    before: usize,
    /// The next stretch (the ring's start) and its length; 0 once taken.
    next: *mut u8,
    next_len: usize,
}

impl RingWriter {
    /// A writer of `limit` bytes of `ring`'s data from `start` (an offset that may pass the
    /// ring's end: the bytes wrap). The caller owns those bytes: free space that only the
    /// holder of the producers' lock writes, `limit` at most the ring's capacity.
    fn new(ring: &Ring, start: usize, limit: usize) -> RingWriter {
        let cap = ring.capacity() as usize;
        let start = start & (cap - 1);
        let first = limit.min(cap - start);
        // SAFETY: `start < cap` and `start + first <= cap`: both pointers lie in (or one past
        // the end of) the ring's data.
        let (at, end) = unsafe { (ring.data().add(start), ring.data().add(start + first)) };
        RingWriter {
            at,
            end,
            begin: at,
            before: 0,
            next: ring.data(),
            next_len: limit - first,
        }
    }

    /// Moves on to the next stretch; an error if there is none.
    #[cold]
    fn next_stretch(&mut self) -> postcard::Result<()> {
        if self.next_len == 0 {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.before += self.end as usize - self.begin as usize;
        self.at = self.next;
        self.begin = self.next;
        // SAFETY: the second stretch is `next_len` bytes from the ring's start (see `new`).
        self.end = unsafe { self.next.add(self.next_len) };
        self.next_len = 0;
        Ok(())
    }

    #[cold]
    fn extend_across(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        let here = self.end as usize - self.at as usize;
        let (first, rest) = bytes.split_at(here.min(bytes.len()));
        if rest.len() > self.next_len {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.copy(first);
        self.next_stretch()?;
        self.copy(rest);
        Ok(())
    }

    /// Copies `bytes`, which fit the stretch.
    #[inline]
    fn copy(&mut self, bytes: &[u8]) {
        // SAFETY: `bytes.len() <= end - at` (checked by the callers); the bytes between are
        // free space of the ring that only this writer writes (see `new`); `bytes` is the
        // serializer's own data, not ring memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.at, bytes.len());
            self.at = self.at.add(bytes.len());
        }
    }
}

impl postcard::ser_flavors::Flavor for RingWriter {
    /// The bytes written.
    type Output = usize;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.at == self.end {
            self.next_stretch()?;
        }
        // SAFETY: `at < end`, inside the stretch being written (see `RingWriter::new`).
        unsafe {
            self.at.write(byte);
            self.at = self.at.add(1);
        }
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if (self.end as usize - self.at as usize) < bytes.len() {
            return self.extend_across(bytes);
        }
        self.copy(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.before + (self.at as usize - self.begin as usize))
    }
}

/// Test-only fault points: the process dies here, as if killed, at the `DIE_HIT`-th time it
/// passes step `DIE_AT` of a put or get (see the tests of a killed producer or consumer).
#[cfg(test)]
pub(crate) static DIE_AT: AtomicU32 = AtomicU32::new(0);
#[cfg(test)]
pub(crate) static DIE_HIT: AtomicU32 = AtomicU32::new(1);

#[inline(always)]
fn fault(_step: u32) {
    #[cfg(test)]
    if DIE_AT.load(Ordering::Relaxed) == _step && DIE_HIT.fetch_sub(1, Ordering::Relaxed) == 1 {
        sys::exit_now(86);
    }
}

#[cold]
fn broken() -> Error {
    Error::state("the queue is broken: a process died in the middle of a message")
}

/// Why a value carrying OS handles was refused.
fn no_handles() -> Error {
    Error::Codec(
        "values carrying OS handles (a Connection, Lock, Queue or shared value) travel through \
         a queue only with put/get on Unix; here pass them as Process arguments or over a \
         Connection"
            .into(),
    )
}

/// Encodes a value that must not carry OS handles (`put_many`).
fn encode_into<T: Serialize>(value: &T, buf: Vec<u8>) -> Result<Vec<u8>> {
    let (bytes, handles) = wire::encode_with_handles_into(value, buf)?;
    if !handles.is_empty() {
        return Err(no_handles());
    }
    Ok(bytes)
}

thread_local! {
    /// A buffer reused by every `put` of this thread: encoding allocates nothing once it has
    /// grown to the size of the messages.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Encodes `value` into this thread's scratch buffer and runs `f` on the bytes and the OS
/// handles found inside.
fn with_encoded<T: Serialize, R>(
    value: &T,
    f: impl FnOnce(&[u8], Vec<sys::OwnedHandle>) -> Result<R>,
) -> Result<R> {
    let mut buf = SCRATCH.take();
    buf.clear();
    wire::encode_with_handles_into(value, buf).and_then(|(bytes, handles)| {
        let out = f(&bytes, handles);
        SCRATCH.set(bytes);
        out
    })
}

/// A decoder for exactly one shape of message: a sequence of bytes (`Vec<u8>`, the
/// counterpart of Python's `bytes`, and any other type that deserializes from a sequence of
/// `u8`s), in the crate's encoding (postcard: the count as a varint, then the bytes).
///
/// serde decodes a `Vec<u8>` element by element, and postcard's general decoder spends about
/// 17 instructions per byte on that; this one yields each byte with almost nothing around it.
/// Whatever else the value asks for (another type at the top or inside the sequence, a count
/// that does not match the message's length, elements left unread) fails with [`NotByteSeq`]
/// before any side effect, and the caller then decodes the message with the crate's codec,
/// which gives the same value or reports the error. So the result never differs from
/// `wire::decode`'s.
struct ByteSeq<'a>(&'a [u8]);

/// Why [`ByteSeq`] gave up (not an error: the crate's codec then decodes the message).
#[derive(Debug)]
struct NotByteSeq;

impl std::fmt::Display for NotByteSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a sequence of bytes")
    }
}

impl std::error::Error for NotByteSeq {}

impl serde::de::Error for NotByteSeq {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotByteSeq
    }
}

impl<'de> serde::Deserializer<'de> for ByteSeq<'_> {
    type Error = NotByteSeq;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NotByteSeq> {
        Err(NotByteSeq)
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        // The count: a LEB128 varint of at most 10 bytes (a u64), as postcard writes a usize.
        let mut count: u64 = 0;
        let mut used = 0;
        loop {
            let &byte = self.0.get(used).ok_or(NotByteSeq)?;
            if used == 9 && byte > 1 {
                return Err(NotByteSeq);
            }
            count |= u64::from(byte & 0x7f) << (7 * used);
            used += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if used == 10 {
                return Err(NotByteSeq);
            }
        }
        let bytes = &self.0[used..];
        if count != bytes.len() as u64 {
            return Err(NotByteSeq);
        }
        let mut elements = Elements(bytes.iter());
        let value = visitor.visit_seq(&mut elements)?;
        if elements.0.len() != 0 {
            return Err(NotByteSeq);
        }
        Ok(value)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        // postcard encodes a newtype as its content.
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The elements of a [`ByteSeq`].
struct Elements<'a>(std::slice::Iter<'a, u8>);

impl<'de> serde::de::SeqAccess<'de> for Elements<'_> {
    type Error = NotByteSeq;

    #[inline]
    fn next_element_seed<S: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, NotByteSeq> {
        match self.0.next() {
            Some(&byte) => seed.deserialize(Byte(byte)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// One element of a [`ByteSeq`]: a `u8`, and nothing else.
struct Byte(u8);

impl<'de> serde::Deserializer<'de> for Byte {
    type Error = NotByteSeq;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NotByteSeq> {
        Err(NotByteSeq)
    }

    #[inline]
    fn deserialize_u8<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, NotByteSeq> {
        visitor.visit_u8(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

fn closed() -> Error {
    Error::state("Queue is closed")
}

// ---------------------------------------------------------------------------------------------

/// A multi-producer, multi-consumer FIFO queue between processes: Python's
/// `multiprocessing.Queue`. Each producer's items arrive in the order it put them.
///
/// A value is encoded straight into the queue's shared memory while this process holds the
/// producers' side: a `Serialize` impl that itself puts into the same queue would wait for
/// itself.
///
/// ```standalone_crate
/// # fn main() -> multiprocess::Result<()> {
/// # multiprocess::init_test();
/// let q = multiprocess::Queue::<String>::new()?;
/// q.put(&"hello".to_string())?;
/// assert_eq!(q.qsize(), 1);
/// assert_eq!(q.get()?, "hello");
/// assert!(matches!(q.get_nowait(), Err(multiprocess::Error::Empty)));
/// # Ok(()) }
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Queue<T> {
    ring: Ring,
    #[serde(skip)]
    closed: bool,
    /// Set once a message did not decode as a plain sequence of bytes (see [`ByteSeq`]):
    /// this handle then decodes with the crate's codec at once.
    #[serde(skip)]
    not_byte_seq: AtomicBool,
    #[serde(skip)]
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue (open, whatever this one's state).
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            closed: false,
            not_byte_seq: AtomicBool::new(false),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Queue qsize={}>", self.ring.items())
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (Python's `Queue()`).
    pub fn new() -> Result<Self> {
        Self::bounded(0)
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`; 0 = unbounded).
    pub fn bounded(maxsize: u32) -> Result<Self> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0 = unbounded) in a ring of `capacity` bytes
    /// (rounded up to a power of two; 4 KiB to 2 GiB). Unread messages must fit the capacity
    /// for `put` to return without a reader.
    pub fn with_capacity(maxsize: u32, capacity: usize) -> Result<Self> {
        Ok(Queue {
            ring: Ring::with_side_channel(capacity, maxsize.min(i32::MAX as u32))?,
            closed: false,
            not_byte_seq: AtomicBool::new(false),
            _t: PhantomData,
        })
    }

    /// Puts `value`, waiting as long as the queue is full.
    ///
    /// # Errors
    /// [`Error::Codec`] if `value` cannot be encoded (nothing is put); [`Error::State`] after
    /// [`close`](Queue::close).
    pub fn put(&self, value: &T) -> Result<()> {
        self.put_timeout(value, true, None)
    }

    /// Puts `value`: with `block`, waits up to `timeout` (`None`: forever) while the queue is
    /// full; without, fails at once. Python's `put(obj, block, timeout)`.
    ///
    /// # Errors
    /// [`Error::Full`] when no room came in time; as [`put`](Queue::put).
    pub fn put_timeout(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        if self.closed {
            return Err(closed());
        }
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        let put = match self.ring.put_value(value, deadline)? {
            Some(put) => put,
            None => with_encoded(value, |message, handles| {
                if handles.is_empty() {
                    self.ring.put(message, deadline)
                } else {
                    self.ring.put_with_handles(message, handles, deadline)
                }
            })?,
        };
        if put { Ok(()) } else { Err(Error::Full) }
    }

    /// Puts without waiting: [`Error::Full`] if full.
    pub fn put_nowait(&self, value: &T) -> Result<()> {
        self.put_timeout(value, false, None)
    }

    /// Puts every value, in order, taking the producers' lock once (beyond Python: for many
    /// small items this is several times faster than a `put` each). Waits for room as long as
    /// it takes. Consumers get the items one by one, as if put one by one.
    ///
    /// # Errors
    /// [`Error::Codec`] if a value cannot be encoded (then nothing is put).
    pub fn put_many<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        if self.closed {
            return Err(closed());
        }
        let values: Vec<&T> = values.into_iter().collect();
        if self.ring.put_values(&values)? {
            return Ok(());
        }
        let mut buf = SCRATCH.take();
        buf.clear();
        let mut ends = Vec::with_capacity(values.len());
        for value in values {
            buf = encode_into(value, buf)?;
            ends.push(buf.len());
        }
        let mut messages = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in &ends {
            messages.push(&buf[start..end]);
            start = end;
        }
        let put = self.ring.put_many(&messages);
        drop(messages);
        SCRATCH.set(buf);
        put
    }

    /// Takes the next item, waiting as long as the queue is empty.
    pub fn get(&self) -> Result<T> {
        self.get_timeout(true, None)
    }

    /// Takes the next item: with `block`, waits up to `timeout` (`None`: forever) while the
    /// queue is empty; without, fails at once. Python's `get(block, timeout)`.
    ///
    /// # Errors
    /// [`Error::Empty`] when nothing came in time; [`Error::Codec`] if the item does not decode
    /// as `T` (it is consumed); [`Error::State`] after [`close`](Queue::close).
    pub fn get_timeout(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        if self.closed {
            return Err(closed());
        }
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        match self
            .ring
            .get_with(deadline, |message| self.decode(&message))?
        {
            Some(value) => value,
            None => Err(Error::Empty),
        }
    }

    /// Decodes a message as a `T`: as a plain sequence of bytes first (see [`ByteSeq`]) unless
    /// a message of this queue did not decode that way, else with the crate's codec.
    fn decode(&self, message: &[u8]) -> Result<T> {
        if !self.not_byte_seq.load(Ordering::Relaxed) {
            match T::deserialize(ByteSeq(message)) {
                Ok(value) => return Ok(value),
                Err(NotByteSeq) => self.not_byte_seq.store(true, Ordering::Relaxed),
            }
        }
        wire::decode(message)
    }

    /// Takes an item without waiting: [`Error::Empty`] if there is none.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_timeout(false, None)
    }

    /// Takes up to `max` items at once, taking the consumers' lock once (beyond Python): waits
    /// up to `timeout` (`None`: forever) for the first, then takes those already there.
    ///
    /// # Errors
    /// [`Error::Empty`] when nothing came in time; [`Error::Codec`] if an item does not decode
    /// (the items before it are lost with it: they were taken in the same call).
    pub fn get_many(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<T>> {
        if self.closed {
            return Err(closed());
        }
        let mut values = Vec::with_capacity(max.min(64));
        let mut failed = None;
        let got = self
            .ring
            .get_many_with(max, Deadline::after(timeout), |m| match self.decode(&m) {
                Ok(value) => values.push(value),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            })?
            .len();
        if let Some(e) = failed {
            return Err(e);
        }
        if got == 0 && max > 0 {
            return Err(Error::Empty);
        }
        Ok(values)
    }

    /// The number of items put and not yet taken (exact at the moment it is read).
    pub fn qsize(&self) -> usize {
        self.ring.count() as usize
    }

    /// Whether the queue holds no item.
    pub fn empty(&self) -> bool {
        self.ring.count() == 0
    }

    /// Whether the queue holds `maxsize` items (never, if unbounded).
    pub fn full(&self) -> bool {
        let maxsize = self.ring.word(MAXSIZE).load(Ordering::Relaxed);
        maxsize != 0 && self.ring.count() >= maxsize
    }

    /// Closes this handle: later `put`/`get` through it fail. Other handles (other processes)
    /// are not affected, as in Python. Items already put stay in the queue.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Python's `join_thread()`: an error before [`close`](Queue::close); otherwise returns at
    /// once, since `put` leaves nothing to flush.
    pub fn join_thread(&self) -> Result<()> {
        if self.closed {
            Ok(())
        } else {
            Err(Error::state("Queue.join_thread() called before close()"))
        }
    }

    /// Python's `cancel_join_thread()`: nothing to cancel here (see the module docs).
    pub fn cancel_join_thread(&self) {}
}

// ---------------------------------------------------------------------------------------------

/// A simpler queue: Python's `multiprocessing.SimpleQueue` (`put`, `get`, `empty`, `close`),
/// unbounded, on the same shared ring as [`Queue`].
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<SimpleQueue qsize={}>", self.queue.ring.items())
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts `value` (see [`Queue::put`]).
    pub fn put(&self, value: &T) -> Result<()> {
        self.queue.put(value)
    }

    /// Takes the next item, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// [`get`](SimpleQueue::get) with a timeout, which Python's SimpleQueue lacks.
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        self.queue.get_timeout(true, timeout)
    }

    /// Whether the queue holds no item.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes this handle (idempotent).
    pub fn close(&mut self) {
        self.queue.close()
    }
}

// ---------------------------------------------------------------------------------------------

/// A [`Queue`] that counts unfinished tasks: Python's `multiprocessing.JoinableQueue`. Every
/// `put` adds a task; consumers call [`task_done`](JoinableQueue::task_done) per item, and
/// [`join`](JoinableQueue::join) waits until every task is done.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<JoinableQueue qsize={} unfinished={}>",
            self.queue.ring.items(),
            self.queue.ring.word(UNFINISHED).load(Ordering::Relaxed)
        )
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Result<Self> {
        Self::bounded(0)
    }

    /// A joinable queue of at most `maxsize` items (0 = unbounded).
    pub fn bounded(maxsize: u32) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::bounded(maxsize)?,
        })
    }

    fn unfinished(&self) -> &AtomicU32 {
        self.queue.ring.word(UNFINISHED)
    }

    /// Puts `value` and counts a task (see [`Queue::put`]).
    pub fn put(&self, value: &T) -> Result<()> {
        self.put_timeout(value, true, None)
    }

    /// [`Queue::put_timeout`], counting a task when it succeeds.
    pub fn put_timeout(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        // Count first, so that a fast consumer's task_done never sees zero.
        self.unfinished().fetch_add(1, Ordering::SeqCst);
        let put = self.queue.put_timeout(value, block, timeout);
        if put.is_err() {
            self.task_done_unchecked();
        }
        put
    }

    /// Puts without waiting.
    pub fn put_nowait(&self, value: &T) -> Result<()> {
        self.put_timeout(value, false, None)
    }

    /// The queue's other operations: [`Queue::get`], [`Queue::qsize`], and so on.
    pub fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// Takes the next item (see [`Queue::get`]).
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes the next item with a timeout (see [`Queue::get_timeout`]).
    pub fn get_timeout(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.queue.get_timeout(block, timeout)
    }

    /// Marks one task done.
    ///
    /// # Errors
    /// [`Error::State`] ("task_done() called too many times") when no task is unfinished.
    pub fn task_done(&self) -> Result<()> {
        let unfinished = self.unfinished();
        let mut n = unfinished.load(Ordering::SeqCst);
        loop {
            if n == 0 {
                return Err(Error::state("task_done() called too many times"));
            }
            match unfinished.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            self.queue.ring.wake(UNFINISHED, JOINERS_ASLEEP);
        }
        Ok(())
    }

    fn task_done_unchecked(&self) {
        if self.unfinished().fetch_sub(1, Ordering::SeqCst) == 1 {
            self.queue.ring.wake(UNFINISHED, JOINERS_ASLEEP);
        }
    }

    /// Waits until every task put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.join_timeout(None)
            .and_then(|done| if done { Ok(()) } else { Err(Error::Timeout) })
    }

    /// [`join`](JoinableQueue::join) for at most `timeout`: `Ok(false)` if tasks remain.
    pub fn join_timeout(&self, timeout: Option<Duration>) -> Result<bool> {
        let ring = &self.queue.ring;
        Ok(
            ring.wait_for(UNFINISHED, JOINERS_ASLEEP, Deadline::after(timeout), || {
                self.unfinished().load(Ordering::SeqCst) == 0
            }),
        )
    }

    /// Closes this handle (see [`Queue::close`]).
    pub fn close(&mut self) {
        self.queue.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Bytes;
    use std::collections::{BTreeSet, VecDeque};

    /// What `ByteSeq` makes of `bytes`, if it does not give up.
    fn fast<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        T::deserialize(ByteSeq(bytes)).ok()
    }

    #[test]
    fn byte_seq_agrees_with_the_codec() {
        for len in [0, 1, 64, 127, 128, 300, 20_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let bytes = wire::encode(&v).unwrap();
            assert_eq!(fast::<Vec<u8>>(&bytes), Some(v.clone()));
            assert_eq!(
                fast::<VecDeque<u8>>(&bytes),
                Some(v.iter().copied().collect())
            );
            assert_eq!(
                fast::<BTreeSet<u8>>(&bytes),
                Some(wire::decode::<BTreeSet<u8>>(&bytes).unwrap())
            );
            // Trailing bytes, a short message: the codec's error, not a value.
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(fast::<Vec<u8>>(&longer).is_none());
            assert!(fast::<Vec<u8>>(&bytes[..bytes.len() - 1]).is_none() || len == 0);
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Wrapped(Vec<u8>);
        let w = Wrapped(vec![1, 2, 3]);
        assert_eq!(fast::<Wrapped>(&wire::encode(&w).unwrap()), Some(w));
        // Anything else gives up before producing a value.
        assert!(fast::<Vec<u32>>(&wire::encode(&vec![1u32, 300]).unwrap()).is_none());
        assert!(fast::<Vec<(u8, u8)>>(&wire::encode(&vec![(1u8, 2u8)]).unwrap()).is_none());
        assert!(fast::<String>(&wire::encode("abc").unwrap()).is_none());
        assert!(fast::<u8>(&[5]).is_none());
        assert!(fast::<Vec<bool>>(&wire::encode(&vec![true]).unwrap()).is_none());
        // An over-long count.
        assert!(fast::<Vec<u8>>(&[0xff; 11]).is_none());
    }

    /// One process, a 4 KiB ring: messages of many sizes up to the largest that is not
    /// streamed (4088 bytes encoded; streaming needs a reader in another process or thread),
    /// wrapping around the ring's end or not, one by one and in batches, come back whole and in
    /// order.
    #[test]
    fn sizes_around_the_ring() {
        let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
        let b = Queue::<Bytes>::with_capacity(0, 4096).unwrap();
        let value = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 + n) as u8).collect() };
        for n in (0..200).chain([1000, 2000, 4070, 4080, 4083, 4084, 4085, 4086]) {
            q.put(&value(n)).unwrap();
            assert_eq!(q.qsize(), 1);
            assert_eq!(q.get().unwrap(), value(n));
            b.put(&Bytes(value(n))).unwrap();
            assert_eq!(b.get().unwrap().0, value(n));
        }
        for round in 0..50 {
            let batch: Vec<Vec<u8>> = (0..7).map(|i| value(round * 3 + i * 5)).collect();
            q.put_many(&batch).unwrap();
            q.put(&value(round)).unwrap();
            assert_eq!(q.qsize(), 8);
            let mut got = q.get_many(3, None).unwrap();
            while got.len() < 8 {
                got.extend(q.get_many(8, None).unwrap());
            }
            assert_eq!(got[..7], batch[..]);
            assert_eq!(got[7], value(round));
            assert!(q.empty());
        }
        assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    }

    /// Property (issue 14): whatever a process left in a queue's shared memory (any header
    /// word, any bytes after it, any published tail), a `get` gives a message, nothing, or an
    /// error within its deadline: never a panic, nor a wait past the deadline.
    #[test]
    fn any_header_word_is_a_message_nothing_or_an_error() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        let case = (
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..200),
            0u32..8192,
        );
        runner
            .run(&case, |(header, body, tail)| {
                let ring = Ring::new(MIN_CAPACITY, 0).expect("a ring");
                ring.copy_in(4, &body);
                ring.header(0).store(header, Ordering::Release);
                ring.word(TAIL).store(tail, Ordering::Release);
                let start = Instant::now();
                let got = ring.get_with(Deadline::after(Some(Duration::from_millis(20))), |m| {
                    m.len()
                });
                prop_assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "{:?}",
                    start.elapsed()
                );
                if let Ok(Some(len)) = got {
                    prop_assert!(
                        len <= MIN_CAPACITY,
                        "a {len}-byte message from a 4 KiB ring"
                    );
                }
                Ok(())
            })
            .expect("no case panics or hangs");
    }

    /// `put_encoded` writes a prefix and a value in place, across the ring's end as well: every
    /// message comes back whole, for sizes around the ring's and over many laps; one larger
    /// than the free space is refused (nothing put).
    #[test]
    fn put_encoded_across_the_ring_end() {
        let ring = Ring::new(MIN_CAPACITY, 0).expect("a ring");
        let mut wrapped = 0;
        for (i, len) in [0usize, 1, 5, 100, 700, 1500, 3000, 4000]
            .iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            let value = Bytes((0..*len).map(|j| (i + j) as u8).collect());
            let prefix = [i as u8, 0xAB, 0xCD];
            let tail = ring.word(TAIL).load(Ordering::Relaxed) as usize % MIN_CAPACITY;
            let fits = ring.put_encoded(&prefix, &value).expect("not broken");
            if !fits {
                // Too large for the free space now (the ring is empty between messages, so only
                // a message longer than the ring's limit).
                assert!(len + 20 > MIN_CAPACITY, "{len} bytes refused");
                continue;
            }
            if tail + 4 + len + 5 > MIN_CAPACITY {
                wrapped += 1;
            }
            let got = ring
                .get_with(Deadline::after(Some(Duration::ZERO)), |m| m.into_owned())
                .expect("a message")
                .expect("one is there");
            assert_eq!(&got[..3], &prefix);
            assert_eq!(wire::decode::<Bytes>(&got[3..]).expect("decodes"), value);
        }
        assert!(
            wrapped > 10,
            "only {wrapped} messages crossed the ring's end"
        );
    }

    /// What a process killed inside a put or get was doing.
    #[derive(Clone, Copy, Debug, Serialize, Deserialize)]
    enum Op {
        Put,
        PutMany,
        /// A bounded queue's `put_many` (one message after another, TAIL moved at the end).
        PutManyBounded,
        Get,
        GetMany,
    }

    /// The child of the test below: does `op` on `q`, dying at the `nth` pass of fault point
    /// `step`.
    fn die_inside(op: Op, step: u32, nth: u32, q: Queue<u64>) {
        DIE_AT.store(step, Ordering::Relaxed);
        DIE_HIT.store(nth, Ordering::Relaxed);
        match op {
            Op::Put => {
                for v in MINE {
                    q.put(&v).expect("put");
                }
            }
            Op::PutMany | Op::PutManyBounded => q.put_many(&MINE).expect("put_many"),
            Op::Get => {
                q.get().expect("get");
                q.get().expect("get");
            }
            Op::GetMany => {
                q.get_many(3, None).expect("get_many");
            }
        }
    }

    /// What the child of the test below puts.
    const MINE: [u64; 3] = [200, 201, 202];

    /// A producer or consumer dies (as if killed, holding the lock) at every step of each
    /// sequence that publishes or takes messages: the next process finds the queue consistent
    /// (each message published is got exactly once, in order; one taken by the dead consumer
    /// may come again; `qsize` counts what is there) — never a lost message or a wrong count.
    /// Each step is hit by some case (else the test fails): the fault points are where the
    /// code runs.
    #[test]
    fn a_process_killed_at_each_step_leaves_the_queue_consistent() {
        crate::init_test();
        let spawn = crate::get_context("spawn").expect("spawn");
        let mut hit = BTreeSet::new();
        let ops = [
            Op::Put,
            Op::PutMany,
            Op::PutManyBounded,
            Op::Get,
            Op::GetMany,
        ];
        for op in ops {
            for step in [1, 2, 3, 4, 5, 6, 7, 11, 12] {
                for nth in [1, 2] {
                    let bounded = matches!(op, Op::PutManyBounded);
                    let q: Queue<u64> = if bounded {
                        Queue::bounded(100).expect("a queue")
                    } else {
                        Queue::new().expect("a queue")
                    };
                    let before = [100u64, 101, 102];
                    q.put_many(&before).expect("puts");
                    let mine = MINE;
                    let mut p = spawn.process(die_inside, (op, step, nth, q.clone()));
                    p.start().expect("starts");
                    p.join(Some(Duration::from_secs(20))).expect("joins");
                    let code = p.exitcode().expect("exitcode");
                    let case = format!("{op:?}, step {step}, hit {nth}: exit code {code:?}");
                    match code {
                        Some(86) => {
                            hit.insert(step);
                        }
                        Some(0) => {}
                        _ => panic!("{case}"),
                    }
                    // The next process: counts, puts one more, counts, takes everything.
                    let first_count = q.qsize();
                    q.put_timeout(&999, true, Some(Duration::from_secs(10)))
                        .unwrap_or_else(|e| panic!("{case}: put: {e}"));
                    let counted = q.qsize();
                    let mut got = Vec::new();
                    while let Ok(v) = q.get_timeout(true, Some(Duration::from_millis(200))) {
                        got.push(v);
                        assert!(got.len() <= 10, "{case}: {got:?}");
                    }
                    assert_eq!(counted, got.len(), "{case}: qsize vs {got:?}");
                    assert_eq!(first_count + 1, got.len(), "{case}: qsize vs {got:?}");
                    assert_eq!(q.qsize(), 0, "{case}");
                    assert_eq!(got.last(), Some(&999), "{case}: {got:?}");
                    let got = &got[..got.len() - 1];
                    match op {
                        Op::Put | Op::PutMany | Op::PutManyBounded => {
                            // All of `before`, then a prefix of the child's (all or none of
                            // a batch).
                            assert_eq!(&got[..3], &before, "{case}: {got:?}");
                            let theirs = &got[3..];
                            assert_eq!(theirs, &mine[..theirs.len()], "{case}: {got:?}");
                            if matches!(op, Op::PutMany) {
                                assert!(theirs.is_empty() || theirs.len() == 3, "{case}");
                            }
                        }
                        Op::Get | Op::GetMany => {
                            // What is left of `before`, in order (a message the dead
                            // consumer was taking may come again).
                            assert!(before.ends_with(got), "{case}: {got:?}");
                        }
                    }
                }
            }
        }
        let all: BTreeSet<u32> = [1, 2, 3, 4, 5, 6, 7, 11, 12].into();
        assert_eq!(hit, all, "fault points never reached");
    }
}
