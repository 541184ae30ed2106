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
//!
//! **Async (cargo feature `tokio`).** [`Queue::get_async`] and [`Queue::put_async`] wait on
//! tokio's reactor: a queue then also holds a wake-up channel (an `eventfd` on Linux, a pipe
//! on macOS) that a side waking sleepers signals while an async waiter is counted in the
//! ring's header; without async waiters, `put` and `get` run exactly as before. On Windows the
//! channel is an event, waited on by the OS thread pool. Each method's docs give its cancel
//! safety.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synchronize::Deadline;
use crate::wire;

/// A queue's `put(value)`, `put_timeout(value, block, timeout)` and `put_nowait(value)`, in
/// that order, each with its docs: the signatures and bounds written once, the short forms'
/// bodies too (they call `put_timeout`); `put_timeout`'s body is the type's own.
macro_rules! put_forms {
    (
        $(#[$put:meta])* put;
        $(#[$timeout:meta])* put_timeout(&$s:ident, $value:ident, $block:ident, $limit:ident)
            $body:block
        $(#[$nowait:meta])* put_nowait;
    ) => {
        put_forms!(@ $(#[$put])* put(&self, value) { self.put_timeout(value, true, None) });
        put_forms!(@ $(#[$timeout])* put_timeout(&$s, $value, $block: bool, $limit: Option<Duration>)
            $body);
        put_forms!(@ $(#[$nowait])* put_nowait(&self, value) { self.put_timeout(value, false, None) });
    };
    (@ $(#[$doc:meta])* $name:ident(&$s:ident, $value:ident $(, $p:ident: $t:ty)*) $body:block) => {
        // With the forked child's code: a child's report on a queue is most children's last
        // work (issue 19, W11).
        crate::sys::forked_child_code! {
            $(#[$doc])*
            pub fn $name<Q>(&$s, $value: &Q $(, $p: $t)*) -> Result<()>
            where
                T: std::borrow::Borrow<Q>,
                Q: Serialize + ?Sized,
            $body
        }
    };
}

#[cfg(feature = "tokio")]
mod aio;
mod codec;
mod get;
mod joinable;
mod pair;
mod put;
mod ring;
mod simple;
#[cfg(test)]
mod tests;
#[cfg(feature = "tokio")]
mod wakeup;

use codec::*;
pub use joinable::JoinableQueue;
pub(crate) use pair::RingPair;
use ring::*;
pub(crate) use ring::{Ring, spin_for, spin_until};
pub use simple::SimpleQueue;

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
/// q.put("hello")?;
/// assert_eq!(q.qsize(), 1);
/// assert_eq!(q.get()?, "hello");
/// assert!(matches!(q.get_nowait(), Err(multiprocess::Error::Empty)));
/// # Ok(()) }
/// ```
///
/// Between processes (the queue travels as a `Process` argument):
///
/// ```standalone_crate
/// use multiprocess::{Process, Queue};
///
/// fn produce(q: Queue<(u32, String)>) {
///     for i in 0..3 {
///         q.put(&(i, format!("item {i}"))).unwrap();
///     }
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let q = Queue::new()?;
/// let mut p = Process::new(produce, (q.clone(),));
/// p.start()?;
/// let got: Vec<(u32, String)> = (0..3).map(|_| q.get()).collect::<Result<_, _>>()?;
/// assert_eq!(got[2], (2, "item 2".to_string())); // one producer's items stay in order
/// p.join()?;
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

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
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

    put_forms! {
        /// Puts `value`, waiting as long as the queue is full.
        ///
        /// `value` is a `T` or anything `T` borrows as, as for `HashMap::get`: a `Queue<String>`
        /// takes `q.put("text")`, a `Queue<Vec<u8>>` a slice. (Such a pair must encode the same,
        /// as `str`/`String`, `[T]`/`Vec<T>` and `Box<T>`/`T` do in serde.)
        ///
        /// # Errors
        /// [`Error::Codec`] if `value` cannot be encoded (nothing is put); [`Error::State`] after
        /// [`close`](Queue::close).
        put;

        /// Puts `value`: with `block`, waits up to `timeout` (`None`: forever) while the queue is
        /// full; without, fails at once. Python's `put(obj, block, timeout)`.
        ///
        /// # Errors
        /// [`Error::Full`] when no room came in time; as [`put`](Queue::put).
        put_timeout(&self, value, block, timeout) {
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
        put_nowait;
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
        self.put_many_timeout(values, None).map(drop)
    }

    /// [`put_many`](Queue::put_many), waiting for room (and for other producers) no longer
    /// than `timeout` (`None`: for ever): how many of the values were put, the first ones, in
    /// order (all of them, unless the queue stayed full until the deadline).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::Queue::<u32>::bounded(3)?;
    /// assert_eq!(q.put_many_timeout(&[1, 2, 3, 4, 5], Some(Duration::from_millis(10)))?, 3);
    /// assert_eq!(q.get_many(10, None)?, [1, 2, 3]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`put_many`](Queue::put_many).
    pub fn put_many_timeout<'a>(
        &self,
        values: impl IntoIterator<Item = &'a T>,
        timeout: Option<Duration>,
    ) -> Result<usize>
    where
        T: 'a,
    {
        if self.closed {
            return Err(closed());
        }
        let deadline = Deadline::after(timeout);
        let values: Vec<&T> = values.into_iter().collect();
        if self.ring.put_values(&values, deadline)? {
            return Ok(values.len());
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
        let put = self.ring.put_many(&messages, deadline);
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
        if let Some(value) = wire::byte_vec(message) {
            return Ok(value);
        }
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
