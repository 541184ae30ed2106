//! The queues' own tests: the byte-sequence decoder against the codec, and rings whose
//! producers and consumers die at each step of a put or get.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{self, Bytes};

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

#[test]
fn byte_vec_agrees_with_the_codec() {
    for len in [0, 1, 64, 127, 128, 300, 20_000] {
        let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let bytes = wire::encode(&v).unwrap();
        assert_eq!(wire::byte_vec::<Vec<u8>>(&bytes), Some(v.clone()));
        // Another type, or a message that is not exactly one sequence of bytes: not taken.
        assert_eq!(wire::byte_vec::<Bytes>(&bytes), None);
        assert_eq!(wire::byte_vec::<VecDeque<u8>>(&bytes), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(wire::byte_vec::<Vec<u8>>(&longer), None);
        if len > 0 {
            assert_eq!(wire::byte_vec::<Vec<u8>>(&bytes[..bytes.len() - 1]), None);
        }
    }
    assert_eq!(wire::byte_vec::<Vec<u8>>(&[0xff; 11]), None);
    assert_eq!(wire::byte_vec::<Vec<u8>>(&[]), None);
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
    let spawn = crate::get_context(crate::StartMethod::Spawn).expect("spawn");
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
                p.join_timeout(Duration::from_secs(20)).expect("joins");
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
