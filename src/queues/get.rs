//! Getting from the ring: one message (borrowed in place when it lies in one piece), several,
//! and their OS handles.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::synchronize::Deadline;
use crate::sys::{self};
use crate::wire;

use super::ring::*;

impl Ring {
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
    pub(super) fn get_with_handles<R>(
        &self,
        head: u32,
        len: usize,
        f: impl FnOnce(Cow<'_, [u8]>) -> R,
    ) -> Result<Option<R>> {
        let broken = || {
            self.word(BROKEN).store(1, Ordering::Relaxed);
            Error::state("the queue is broken: a message's OS handles are missing")
        };
        let Some(side) = &self.shared.side else {
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

    pub(super) fn get_locked<R>(
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
