//! Large messages between our own processes, copied straight from sender to receiver.
//!
//! Through the byte stream a message is copied twice: into the kernel by the sender and out of
//! it by the receiver. Between the two ends of one of our [`pipe`](crate::pipe)s it need only
//! be copied once, and that copy can run on two CPUs: on Linux the receiver reads chunks of
//! the sender's buffer with `process_vm_readv` while the sender writes other chunks into the
//! receiver's buffer with `process_vm_writev` (Linux; macOS has no unprivileged equivalent, and
//! Windows's `ReadProcessMemory`/`WriteProcessMemory` cannot be tested under Wine, so both keep
//! the stream: `sys::CROSS_PROCESS_COPY`). This is the "cross-memory attach" path MPI libraries
//! take for large messages within one host.
//!
//! A message of at least [`THRESHOLD`] bytes goes as follows. The pair of connections shares a
//! one-page control block with a slot per direction.
//!
//! 1. The sender claims its direction's slot (one large message per direction at a time, even
//!    across processes sharing an end), records its pid, the payload's address and length and a
//!    random cookie it keeps in its memory, marks the slot `OFFERED`, and writes a 16-byte offer
//!    frame into the stream (`-2`, the length as 8 bytes, the transfer's sequence number), so
//!    the offer keeps its place among the other messages.
//! 2. The receiver, on reading the offer, picks the payload's destination (its own buffer),
//!    checks that it can read the sender's cookie at the recorded address (proof that the pid
//!    means the sender: not another PID namespace, permitted), records its own pid, buffer and
//!    cookie and moves the slot to `SPLIT`. Both processes then claim chunks one at a time and
//!    copy them until none is left; the sender (after checking the receiver's cookie in turn)
//!    marks `SENT`, the receiver, once it has copied its chunks and any the sender could not,
//!    `DONE`. The sender returns only then: its buffer is borrowed until the receiver is done.
//! 3. Fallbacks keep the stream's meaning. A receiver not reading within [`ACCEPT_WAIT`] finds
//!    the slot moved to `STREAM` by the sender, who then writes the payload into the stream
//!    after the offer, as a plain send would (and blocks as a plain send would). A receiver that
//!    cannot reach the sender's memory moves it to `STREAM` itself. A receiver refusing the
//!    length (over its limit) answers `REFUSED`, and the sender returns as after a plain send.
//!
//! Every wait is in slices that check the other process is alive, so neither side outlives a
//! dead peer. Waiting for a slot held by a process that died takes the slot over; the
//! sequence number in the offer and in the chunk counter keeps a late peer from acting on a
//! transfer that is not its own.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys;

/// Messages at least this long leave the stream.
pub(crate) const THRESHOLD: usize = 1 << 20;

/// The offer frame's first four bytes (a length no CPython frame has).
pub(crate) const MARKER: [u8; 4] = (-2i32).to_be_bytes();

/// The offer frame's length: marker, payload length, sequence number.
pub(crate) const OFFER_LEN: usize = 16;

/// How long a sender waits for the receiver to take an offer before it falls back to the
/// stream. A receiver blocked in `recv` answers in microseconds.
const ACCEPT_WAIT: Duration = Duration::from_millis(2);

/// How often a wait checks that the other process is still alive.
const SLICE: Duration = Duration::from_millis(50);

/// Smallest unit of work claimed by either side.
const CHUNK: usize = 512 << 10;

/// Words per slot, and the words' meanings.
const SLOT_WORDS: usize = 32;
const CLAIM: usize = 0;
const PHASE: usize = 1;
const SEQ: usize = 2;
const S_PID: usize = 3;
const R_PID: usize = 4;
/// The transfer's sequence number (low 16 bits) above the next unclaimed chunk (low 16 bits).
const NEXT: usize = 5;
/// 1 + the chunk the sender failed to write, or 0.
const FAILED: usize = 6;
const SRC: usize = 8;
const LEN: usize = 10;
const S_COOKIE_AT: usize = 12;
const S_COOKIE: usize = 14;
const DST: usize = 16;
const R_COOKIE_AT: usize = 18;
const R_COOKIE: usize = 20;

const IDLE: u32 = 0;
const OFFERED: u32 = 1;
const SPLIT: u32 = 2;
const STREAM: u32 = 3;
const REFUSED: u32 = 4;
const SENT: u32 = 5;
const DONE: u32 = 6;
const BROKEN: u32 = 7;

/// One end's share of a pair's control block.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bulk {
    region: sys::Region,
    /// Which slot this end sends through (the other is the one it receives through).
    side: u32,
}

impl Bulk {
    /// Closes the region's handles (see [`Connection::abandon`](super::Connection::abandon)).
    pub(crate) fn close_handles(&self) {
        self.region.close_handles();
    }

    /// Control for the two ends of a new pair, or `None` where the OS cannot copy between
    /// processes (large messages then stay in the stream).
    pub(crate) fn pair() -> Option<(Bulk, Bulk)> {
        if !sys::CROSS_PROCESS_COPY {
            return None;
        }
        let region = sys::Region::new(2 * SLOT_WORDS * 4).ok()?;
        let twin = sys::Region::from_handles(region.handles().ok()?).ok()?;
        Some((
            Bulk { region, side: 0 },
            Bulk {
                region: twin,
                side: 1,
            },
        ))
    }

    fn slot(&self, side: u32) -> Slot<'_> {
        let start = side as usize % 2 * SLOT_WORDS;
        Slot {
            words: &self.region.words()[start..start + SLOT_WORDS],
            region: &self.region,
        }
    }

    /// Sends `payload` (at least [`THRESHOLD`] bytes) as one message; the caller holds the
    /// connection's write lock.
    pub(crate) fn send(&self, stream: &sys::Stream, payload: &[u8]) -> Result<()> {
        let sending = |e| Error::io("sending a message", e);
        let Ok(cookie) = getrandom::u64() else {
            return crate::wire::write_frame(&mut &*stream, payload).map_err(sending);
        };
        let me = sys::current_pid();
        let slot = self.slot(self.side);
        slot.claim(me);
        let _release = Release(&slot);
        let seq = slot.words[SEQ]
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let cookie_cell = std::hint::black_box(cookie);
        slot.set(S_PID, me);
        slot.set64(SRC, payload.as_ptr() as u64);
        slot.set64(LEN, payload.len() as u64);
        slot.set64(S_COOKIE_AT, &cookie_cell as *const u64 as u64);
        slot.set64(S_COOKIE, cookie);
        slot.set(FAILED, 0);
        slot.set(NEXT, seq << 16);
        slot.words[PHASE].store(OFFERED, Ordering::Release);

        let mut offer = [0u8; OFFER_LEN];
        offer[..4].copy_from_slice(&MARKER);
        offer[4..12].copy_from_slice(&(payload.len() as u64).to_be_bytes());
        offer[12..].copy_from_slice(&seq.to_be_bytes());
        let mut out = stream;
        out.write_all(&offer).map_err(sending)?;

        let deadline = Instant::now() + ACCEPT_WAIT;
        let phase = loop {
            let phase = slot.get(PHASE);
            if phase != OFFERED {
                break phase;
            }
            let now = Instant::now();
            if now >= deadline {
                match slot.swap(PHASE, OFFERED, STREAM) {
                    Ok(()) => break STREAM,
                    Err(phase) => break phase,
                }
            }
            slot.region
                .wait(&slot.words[PHASE], OFFERED, Some(deadline - now));
        };
        let result = match phase {
            STREAM => out.write_all(payload).map_err(sending),
            REFUSED => Ok(()),
            SPLIT => self.send_split(&slot, seq, payload),
            other => Err(protocol(format!("offer answered with phase {other}"))),
        };
        std::hint::black_box(&cookie_cell);
        result
    }

    /// The sender's part of a split copy.
    fn send_split(&self, slot: &Slot<'_>, seq: u32, payload: &[u8]) -> Result<()> {
        let peer = slot.get(R_PID);
        let dst = slot.get64(DST) as usize;
        let plan = Plan::new(payload.len());
        if proven(peer, slot.get64(R_COOKIE_AT), slot.get64(R_COOKIE)) {
            while let Some(k) = slot.next_chunk(seq, plan.count) {
                let range = plan.range(k);
                let start = range.start;
                if sys::copy_to_process(peer, &payload[range], dst + start).is_err() {
                    slot.set(FAILED, k + 1);
                    break;
                }
            }
        }
        if let Err(phase) = slot.swap(PHASE, SPLIT, SENT) {
            return Err(protocol(format!("split copy found phase {phase}")));
        }
        slot.region.wake(&slot.words[PHASE], u32::MAX);
        loop {
            match slot.get(PHASE) {
                DONE => return Ok(()),
                SENT => {}
                BROKEN => {
                    return Err(Error::io(
                        "sending a message",
                        io::Error::other("the receiver could not copy the message"),
                    ));
                }
                phase => return Err(protocol(format!("split copy found phase {phase}"))),
            }
            if !slot.region.wait(&slot.words[PHASE], SENT, Some(SLICE)) && !sys::process_alive(peer)
            {
                return Err(Error::io(
                    "sending a message",
                    io::ErrorKind::BrokenPipe.into(),
                ));
            }
        }
    }

    /// Answers an offer whose length the receiver refuses; true if the sender was told (the
    /// payload is then not in the stream).
    pub(crate) fn refuse(&self, seq: u32) -> bool {
        let slot = self.slot(self.side + 1);
        let told = slot.get(SEQ) == seq && slot.swap(PHASE, OFFERED, REFUSED).is_ok();
        slot.region.wake(&slot.words[PHASE], u32::MAX);
        told
    }

    /// Answers offer `seq` with "through the stream" (a receiver that must not block takes
    /// the payload there); nothing if it was answered already.
    pub(crate) fn decline(&self, seq: u32) {
        let slot = self.slot(self.side + 1);
        if slot.get(SEQ) == seq && slot.swap(PHASE, OFFERED, STREAM).is_ok() {
            slot.region.wake(&slot.words[PHASE], u32::MAX);
        }
    }

    /// Receives the payload of offer `seq` into `dst` (exactly its length), copying it from
    /// the sender, or with `from_stream` if it follows the offer in the stream.
    pub(crate) fn receive(
        &self,
        seq: u32,
        dst: &mut [u8],
        from_stream: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let slot = self.slot(self.side + 1);
        // An offer older than the slot's transfer was streamed: its sender has finished.
        if slot.get(SEQ) != seq {
            return from_stream(dst);
        }
        let phase = slot.get(PHASE);
        if phase == OFFERED {
            if slot.get64(LEN) != dst.len() as u64 {
                return Err(protocol("offer and record disagree on the length".into()));
            }
            let peer = slot.get(S_PID);
            let cookie = getrandom::u64().ok();
            let src = slot.get64(SRC) as usize;
            if let Some(cookie) = cookie
                && proven(peer, slot.get64(S_COOKIE_AT), slot.get64(S_COOKIE))
            {
                let cookie_cell = std::hint::black_box(cookie);
                slot.set(R_PID, sys::current_pid());
                slot.set64(DST, dst.as_mut_ptr() as u64);
                slot.set64(R_COOKIE_AT, &cookie_cell as *const u64 as u64);
                slot.set64(R_COOKIE, cookie);
                if slot.swap(PHASE, OFFERED, SPLIT).is_ok() {
                    slot.region.wake(&slot.words[PHASE], u32::MAX);
                    let result = receive_split(&slot, peer, seq, src, dst);
                    std::hint::black_box(&cookie_cell);
                    return result;
                }
            } else {
                let _ = slot.swap(PHASE, OFFERED, STREAM);
                slot.region.wake(&slot.words[PHASE], u32::MAX);
            }
        }
        match slot.get(PHASE) {
            // Streamed, the sender perhaps already finished and gone.
            STREAM | IDLE => from_stream(dst),
            phase => Err(protocol(format!("offer found phase {phase}"))),
        }
    }
}

/// The receiver's part of a split copy.
fn receive_split(slot: &Slot<'_>, peer: u32, seq: u32, src: usize, dst: &mut [u8]) -> Result<()> {
    let plan = Plan::new(dst.len());
    let mut failed = None;
    while let Some(k) = slot.next_chunk(seq, plan.count) {
        let range = plan.range(k);
        let start = range.start;
        if let Err(e) = sys::copy_from_process(peer, src + start, &mut dst[range]) {
            failed = Some(e);
            break;
        }
    }
    // The sender may still be writing into `dst`: wait for it (or its death).
    loop {
        match slot.get(PHASE) {
            SENT => break,
            SPLIT => {}
            phase => return Err(protocol(format!("split copy found phase {phase}"))),
        }
        if !slot.region.wait(&slot.words[PHASE], SPLIT, Some(SLICE)) && !sys::process_alive(peer) {
            return Err(Error::io(
                "reading a message",
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the sender died during the message",
                ),
            ));
        }
    }
    if failed.is_none() {
        if let Some(k) = slot.get(FAILED).checked_sub(1) {
            let range = plan.range(k);
            let start = range.start;
            if let Err(e) = sys::copy_from_process(peer, src + start, &mut dst[range]) {
                failed = Some(e);
            }
        }
    }
    let end = if failed.is_none() { DONE } else { BROKEN };
    let _ = slot.swap(PHASE, SENT, end);
    slot.region.wake(&slot.words[PHASE], u32::MAX);
    match failed {
        None => Ok(()),
        Some(e) => Err(Error::io("reading a message", e)),
    }
}

/// Whether process `pid` holds `cookie` at address `at`: it is the process that recorded them,
/// and this one may read its memory.
fn proven(pid: u32, at: u64, cookie: u64) -> bool {
    let mut seen = [0u8; 8];
    sys::copy_from_process(pid, at as usize, &mut seen).is_ok()
        && u64::from_ne_bytes(seen) == cookie
}

fn protocol(what: String) -> Error {
    Error::io(
        "a large message between processes",
        io::Error::new(io::ErrorKind::InvalidData, what),
    )
}

/// How a payload divides into chunks (at most 65535, the counter's width).
struct Plan {
    len: usize,
    chunk: usize,
    count: u32,
}

impl Plan {
    fn new(len: usize) -> Plan {
        let chunk = CHUNK.max(len.div_ceil(0xffff));
        Plan {
            len,
            chunk,
            count: len.div_ceil(chunk) as u32,
        }
    }

    fn range(&self, k: u32) -> Range<usize> {
        let start = (k as usize * self.chunk).min(self.len);
        start..(start + self.chunk).min(self.len)
    }
}

/// One direction's words in the control block.
struct Slot<'a> {
    words: &'a [AtomicU32],
    region: &'a sys::Region,
}

impl Slot<'_> {
    fn get(&self, i: usize) -> u32 {
        self.words[i].load(Ordering::Acquire)
    }

    fn set(&self, i: usize, value: u32) {
        self.words[i].store(value, Ordering::Relaxed);
    }

    fn get64(&self, i: usize) -> u64 {
        u64::from(self.get(i)) | u64::from(self.get(i + 1)) << 32
    }

    fn set64(&self, i: usize, value: u64) {
        self.set(i, value as u32);
        self.set(i + 1, (value >> 32) as u32);
    }

    /// Moves word `i` from `from` to `to`; `Err` holds what it was instead.
    fn swap(&self, i: usize, from: u32, to: u32) -> std::result::Result<(), u32> {
        self.words[i]
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
    }

    /// Takes the slot for process `me`: waits while another live process (or another thread
    /// of this one) holds it; takes it over from a process that died holding it.
    fn claim(&self, me: u32) {
        loop {
            match self.swap(CLAIM, 0, me) {
                Ok(()) => return,
                Err(owner) if owner != me && !sys::process_alive(owner) => {
                    if self.swap(CLAIM, owner, me).is_ok() {
                        return;
                    }
                }
                Err(owner) => {
                    self.region.wait(&self.words[CLAIM], owner, Some(SLICE));
                }
            }
        }
    }

    /// Claims the next chunk of transfer `seq` (of `count`), if any is left.
    fn next_chunk(&self, seq: u32, count: u32) -> Option<u32> {
        let word = &self.words[NEXT];
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let k = current & 0xffff;
            if current >> 16 != seq & 0xffff || k >= count {
                return None;
            }
            match word.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(k),
                Err(now) => current = now,
            }
        }
    }
}

/// Gives the slot back when the sender is done with it, however it leaves.
struct Release<'a, 'b>(&'a Slot<'b>);

impl Drop for Release<'_, '_> {
    fn drop(&mut self) {
        self.0.words[PHASE].store(IDLE, Ordering::Release);
        self.0.words[CLAIM].store(0, Ordering::Release);
        self.0.region.wake(&self.0.words[CLAIM], u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_byte_once() {
        for len in [THRESHOLD, THRESHOLD + 1, 64 << 20, (CHUNK * 0xffff) + 12345] {
            let plan = Plan::new(len);
            assert!(plan.count <= 0xffff);
            let mut next = 0;
            for k in 0..plan.count {
                let r = plan.range(k);
                assert_eq!(r.start, next);
                assert!(!r.is_empty());
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }

    /// The OS copy this module rests on, within this process (the integration tests cross
    /// processes): both directions, and a bad address is an error, not a crash.
    #[test]
    fn the_os_copies_between_address_spaces() {
        if !sys::CROSS_PROCESS_COPY {
            return;
        }
        let me = sys::current_pid();
        let src: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let mut dst = vec![0u8; src.len()];
        sys::copy_from_process(me, src.as_ptr() as usize, &mut dst).unwrap();
        assert!(dst == src);
        let mut back = vec![0u8; src.len()];
        sys::copy_to_process(me, &src, back.as_mut_ptr() as usize).unwrap();
        std::hint::black_box(&mut back);
        assert!(back == src);
        assert!(sys::copy_from_process(me, 8, &mut dst[..8]).is_err());
        let cookie = 0x1234_5678_9abc_def0u64;
        assert!(proven(me, &cookie as *const u64 as u64, cookie));
        assert!(!proven(me, &cookie as *const u64 as u64, cookie ^ 1));
    }

    /// Two ends in one process: a large message with the receiver already waiting takes the
    /// copy path (its chunks were claimed; which path is a matter of timing, so a few tries
    /// are allowed); sent with nobody receiving, it goes through the stream (no chunk claimed)
    /// and still arrives whole. The slot ends idle and unclaimed.
    #[test]
    fn a_pair_in_one_process() {
        let Ok((a, b)) = crate::pipe() else {
            panic!("pipe");
        };
        let Some(bulk) = a.bulk.as_ref() else {
            return;
        };
        let slot = bulk.slot(0);
        let m: Vec<u8> = (0..(2 << 20) + 3).map(|i| (i % 253) as u8).collect();
        let claimed = || slot.get(NEXT) & 0xffff;
        let copied = (0..20).any(|_| {
            std::thread::scope(|s| {
                let r = s.spawn(|| b.recv_bytes().unwrap());
                std::thread::sleep(Duration::from_millis(50));
                a.send_bytes(&m).unwrap();
                assert!(r.join().unwrap() == m);
            });
            claimed() == Plan::new(m.len()).count
        });
        assert!(copied, "never copied between the processes' memory");
        std::thread::scope(|s| {
            s.spawn(|| a.send_bytes(&m).unwrap());
            std::thread::sleep(Duration::from_millis(100));
            assert!(b.recv_bytes().unwrap() == m);
        });
        assert_eq!((claimed(), slot.get(PHASE), slot.get(CLAIM)), (0, IDLE, 0));
    }

    /// A peer that writes offers of its own making (garbage after the marker, a sequence
    /// number the control block never saw, a length over the limit, a truncated offer) and
    /// hangs up: every receive returns an error, never hangs or panics.
    #[test]
    fn forged_offers_are_errors() {
        let offer = |len: u64, seq: u32| {
            let mut o = MARKER.to_vec();
            o.extend_from_slice(&len.to_be_bytes());
            o.extend_from_slice(&seq.to_be_bytes());
            o
        };
        let cases: Vec<(Vec<u8>, Option<usize>)> = vec![
            (offer(2 << 20, 7), None),
            (offer(2 << 20, 0), None),
            (offer(u64::MAX, 1), None),
            (offer(5 << 20, 1), Some(1 << 20)),
            (MARKER[..3].to_vec(), None),
            (offer(3 << 20, 0)[..10].to_vec(), None),
        ];
        for (bytes, maxlength) in cases {
            let Ok((mut a, b)) = crate::pipe() else {
                panic!("pipe");
            };
            if b.bulk.is_none() {
                return;
            }
            {
                let Ok(mut stream) = a.stream(false) else {
                    panic!("stream");
                };
                assert!(stream.write_all(&bytes).is_ok());
            }
            a.close();
            let got = maxlength.map_or_else(|| b.recv_bytes(), |m| b.recv_bytes_max(m));
            assert!(got.is_err(), "{bytes:?} gave {:?}", got.map(|m| m.len()));
            let Ok((mut a, b)) = crate::pipe() else {
                panic!("pipe");
            };
            {
                let Ok(mut stream) = a.stream(false) else {
                    panic!("stream");
                };
                assert!(stream.write_all(&bytes).is_ok());
            }
            a.close();
            let mut buf = vec![0u8; 4 << 20];
            assert!(b.recv_bytes_into(&mut buf, 0).is_err(), "{bytes:?}");
        }
    }
}
