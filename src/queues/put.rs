//! Putting into the ring: whole messages, values encoded in place, batches, messages longer
//! than the ring (streamed), and their OS handles.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::synchronize::Deadline;
use crate::sys::{self};
use crate::wire;

use super::codec::*;
use super::ring::*;

impl Ring {
    /// Producers' side, with the room checked (`span(len) + 4` bytes free at `tail`): writes a
    /// whole message made of `parts` (`len` bytes in all) and publishes it to consumers; returns
    /// where the next message goes. The caller then moves TAIL there.
    ///
    /// Consumers learn of a message from its header word, in the cache line they read next
    /// anyway, not from TAIL (a line that would otherwise move between the CPUs once per
    /// message). For that, the word where the next message will go must read 0 until it is
    /// published there: it is zeroed here, before this message's header is stored with release.
    /// (A fresh ring is all zeros; other bytes of the free space may hold anything.)
    pub(super) fn write_whole(&self, tail: u32, parts: &[&[u8]], len: usize, flags: u32) -> u32 {
        let mut at = tail.wrapping_add(4);
        for part in parts {
            self.copy_in(at, part);
            at = at.wrapping_add(part.len() as u32);
        }
        self.finish_whole(tail, len, flags)
    }

    /// [`Ring::write_whole`] once the message's bytes are in place.
    pub(super) fn finish_whole(&self, tail: u32, len: usize, flags: u32) -> u32 {
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
    pub(super) fn put_value<T: Serialize + ?Sized>(
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
    pub(super) fn free_space(&self) -> (u32, usize) {
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
    pub(super) fn encode_at<T: Serialize + ?Sized>(
        &self,
        at: u32,
        room: usize,
        value: &T,
    ) -> Option<usize> {
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
    /// The producers' lock is waited for until `deadline`; not taken by then, `Ok(false)` too
    /// (the general path then finds the deadline passed).
    pub(super) fn put_values<T: Serialize>(
        &self,
        values: &[&T],
        deadline: Deadline,
    ) -> Result<bool> {
        let Some((first, rest)) = values.split_first() else {
            return Ok(true);
        };
        if self.word(MAXSIZE).load(Ordering::Relaxed) != 0 {
            return Ok(false);
        }
        self.check_broken()?;
        if !self.lock(WLOCK, deadline)? {
            return Ok(false);
        }
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
    pub(super) fn put_with_handles(
        &self,
        message: &[u8],
        handles: Vec<sys::OwnedHandle>,
        deadline: Deadline,
    ) -> Result<bool> {
        let Some(side) = &self.shared.side else {
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
    /// room (and the lock) until `deadline` (messages longer than the ring go through
    /// [`Ring::put`]): how many were put, in order (all, unless the deadline passed first).
    pub(crate) fn put_many(&self, messages: &[&[u8]], deadline: Deadline) -> Result<usize> {
        self.check_broken()?;
        if !self.lock(WLOCK, deadline)? {
            return Ok(0);
        }
        let outcome = self.put_many_locked(messages, deadline);
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
    pub(super) fn put_many_locked(&self, messages: &[&[u8]], deadline: Deadline) -> Result<usize> {
        let cap = self.capacity();
        let maxsize = self.word(MAXSIZE).load(Ordering::Relaxed);
        let mut tail = self.word(TAIL).load(Ordering::Relaxed);
        let mut settled = tail;
        let mut head = self.word(HEAD_SEEN).load(Ordering::Relaxed);
        for (put, m) in messages.iter().enumerate() {
            if m.len() > LIMIT || !fits_whole(m.len(), cap) {
                // Longer than the ring: streamed on its own.
                self.settle(tail);
                if !self.put_locked(&[m], m.len(), deadline, &|| false)? {
                    return Ok(put);
                }
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
                let room = self.wait_for(HEAD, PRODUCERS_ASLEEP, deadline, || {
                    !full(self.word(HEAD).load(Ordering::Acquire))
                });
                head = self.word(HEAD).load(Ordering::Acquire);
                if !room {
                    self.word(HEAD_SEEN).store(head, Ordering::Relaxed);
                    return Ok(put);
                }
            }
            tail = self.write_whole(tail, &[m], m.len(), 0);
            fault(7);
        }
        self.word(HEAD_SEEN).store(head, Ordering::Relaxed);
        self.settle(tail);
        Ok(messages.len())
    }

    pub(super) fn put_locked(
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
}
