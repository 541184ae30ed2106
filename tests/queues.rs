//! Queue cases Q01–Q07 of python-reference.md §2.3 with real processes, plus the ring's edge
//! cases: wrap-around, messages longer than the ring, many producers and consumers.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use multiprocess::{Error, JoinableQueue, Process, Queue, SimpleQueue};
use serde::{Deserialize, Serialize};

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

fn produce(q: Queue<(u32, u32)>, id: u32, n: u32) {
    for i in 0..n {
        q.put(&(id, i)).unwrap();
    }
}

fn consume(q: Queue<(u32, u32)>, n: u32) -> Vec<(u32, u32)> {
    (0..n)
        .map(|_| q.get_timeout(true, secs(60.0)).unwrap())
        .collect()
}

/// Checks that each producer's items appear in increasing order in `got`.
fn assert_per_producer_order(got: &[(u32, u32)]) {
    let mut last: HashMap<u32, u32> = HashMap::new();
    for &(id, i) in got {
        if let Some(&prev) = last.get(&id) {
            assert!(i > prev, "producer {id}: {i} after {prev}");
        }
        last.insert(id, i);
    }
}

/// Q01: 2 producers × 1000 items reach one consumer; per-producer order kept.
#[test]
fn q01_multi_producer_delivery() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::new().unwrap();
    let mut producers: Vec<Process> = (0..2)
        .map(|id| Process::new(produce, (q.clone(), id, 1000u32)))
        .collect();
    for p in &mut producers {
        p.start().unwrap();
    }
    let got = consume(q.clone(), 2000);
    for p in &mut producers {
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    assert_eq!(got.len(), 2000);
    assert_per_producer_order(&got);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 2000, "duplicates");
    assert!(q.empty());
}

/// Many producers and consumers through a small ring (4 KiB: constant wrap-around): nothing
/// lost, nothing duplicated, per-producer order kept in every consumer's view.
#[test]
fn q01_many_producers_many_consumers_small_ring() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::with_capacity(0, 4096).unwrap();
    let mut producers: Vec<Process> = (0..3)
        .map(|id| Process::new(produce, (q.clone(), id, 3000u32)))
        .collect();
    let mut consumers: Vec<Process> = (0..2)
        .map(|_| Process::new(consume, (q.clone(), 4000u32)))
        .collect();
    for p in producers.iter_mut().chain(consumers.iter_mut()) {
        p.start().unwrap();
    }
    let mut all = consume(q.clone(), 1000);
    assert_per_producer_order(&all);
    for c in &mut consumers {
        let got: Vec<(u32, u32)> = c.result().unwrap();
        assert_per_producer_order(&got);
        all.extend(got);
    }
    for p in &mut producers {
        p.join().unwrap();
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (9000, 9000));
}

/// Q02: bounded queue timeouts.
#[test]
fn q02_bounded_queue_timeouts() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<u32>::bounded(6).unwrap();
    for i in 0..6 {
        q.put(&i).unwrap();
    }
    assert!(q.full());
    let t = Instant::now();
    assert!(matches!(q.put_nowait(&6), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(&6, false, secs(5.0)),
        Err(Error::Full)
    ));
    assert!(t.elapsed() < Duration::from_millis(200));
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(&6, true, secs(0.3)),
        Err(Error::Full)
    ));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    for i in 0..6 {
        assert_eq!(q.get().unwrap(), i);
    }
    let t = Instant::now();
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    assert!(t.elapsed() < Duration::from_millis(200));
    let t = Instant::now();
    assert!(matches!(q.get_timeout(true, secs(0.35)), Err(Error::Empty)));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

fn get_one(q: Queue<u32>) -> u32 {
    q.get().unwrap()
}

/// Q02 across processes: a full queue's blocked put resumes when another process gets.
#[test]
fn q02_blocked_put_resumes_after_a_get_elsewhere() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<u32>::bounded(1).unwrap();
    q.put(&1).unwrap();
    let mut p = Process::new(get_one, (q.clone(),));
    p.start().unwrap();
    q.put_timeout(&2, true, secs(60.0)).unwrap();
    assert_eq!(p.result::<u32>().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
}

/// Q03: size accounting.
#[test]
fn q03_size_accounting() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<String>::new().unwrap();
    assert!(q.empty());
    q.put("a").unwrap();
    assert_eq!(q.qsize(), 1);
    q.put("b").unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize(), 0);
    assert!(q.empty());
}

/// A value whose encoding fails.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Item {
    Good(u32),
    Bad(Unencodable),
}

/// Q04: an unencodable item fails at put, synchronously; the queue goes on.
#[test]
fn q04_unencodable_item_fails_at_put() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<Item>::new().unwrap();
    let e = q.put(&Item::Bad(Unencodable)).unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e}");
    // postcard drops a custom error's text; the type is named instead.
    assert!(
        e.to_string()
            .contains("cannot encode a value of type queues::Item"),
        "{e}"
    );
    assert_eq!(q.qsize(), 0);
    q.put(&Item::Good(7)).unwrap();
    assert_eq!(q.qsize(), 1);
    assert!(matches!(q.get().unwrap(), Item::Good(7)));
    // Values carrying OS handles: refused by put_many everywhere, and by put on Windows.
    let lq = Queue::<multiprocess::Lock>::new().unwrap();
    let e = lq
        .put_many(&[multiprocess::Lock::new().unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("carrying OS handles"), "{e}");
    #[cfg(windows)]
    {
        let e = lq.put(&multiprocess::Lock::new().unwrap()).unwrap_err();
        assert!(e.to_string().contains("carrying OS handles"), "{e}");
    }
}

#[cfg(unix)]
fn put_a_lock_and_exit(q: Queue<(multiprocess::Lock, multiprocess::Connection)>) {
    let lock = multiprocess::Lock::new().unwrap();
    lock.acquire().unwrap();
    let (ours, theirs) = multiprocess::pipe().unwrap();
    ours.send(&"through the queue").unwrap();
    q.put(&(lock, theirs)).unwrap();
}

/// Beyond Python (which refuses them): values carrying OS handles travel through a queue on
/// Unix, and arrive usable after their sender has exited.
#[cfg(unix)]
#[test]
fn values_with_handles_through_a_queue() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::new().unwrap();
    let mut p = Process::new(put_a_lock_and_exit, (q.clone(),));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(
        p.exitcode().unwrap(),
        Some(0),
        "the sender exited before anyone read"
    );
    q.put(&(
        multiprocess::Lock::new().unwrap(),
        multiprocess::pipe().unwrap().0,
    ))
    .unwrap();
    let (lock, conn): (multiprocess::Lock, multiprocess::Connection) =
        q.get_timeout(true, secs(30.0)).unwrap();
    assert!(lock.is_locked(), "the child's lock arrived, held");
    // ... by a process that has exited since: the lock is recovered.
    assert!(matches!(lock.try_acquire(), Err(Error::OwnerDied { .. })));
    assert_eq!(conn.recv::<String>().unwrap(), "through the queue");
    let (second, _) = q.get_timeout(true, secs(30.0)).unwrap();
    assert!(!second.is_locked());
    assert!(q.empty());
}

/// Q05: a closed handle refuses put and get; join_thread before close is an error.
#[test]
fn q05_closed_queue() {
    multiprocess::init_test();
    let _g = common::start();
    let mut q = Queue::<u32>::new().unwrap();
    let other = q.clone();
    let e = q.join_thread().unwrap_err();
    assert_eq!(e.to_string(), "Queue.join_thread() called before close()");
    q.put(&1).unwrap();
    q.close();
    assert_eq!(q.put(&2).unwrap_err().to_string(), "Queue is closed");
    assert_eq!(q.get().unwrap_err().to_string(), "Queue is closed");
    q.join_thread().unwrap();
    // Other handles keep working, and the item put before close is there.
    assert_eq!(other.get().unwrap(), 1);
    let mut s = SimpleQueue::<u32>::new().unwrap();
    s.put(&3).unwrap();
    assert!(!s.empty());
    assert_eq!(s.get().unwrap(), 3);
    s.close();
    s.close();
    assert!(s.put(&4).is_err());
}

fn put_ten_megabytes(q: Queue<Vec<u8>>) {
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    q.put(&big).unwrap();
}

/// Q06: a child that put 10 MB and returned exits at once (Python's child hangs until the
/// parent reads); the data waits in the queue, intact.
#[test]
fn q06_exit_with_unread_data_never_hangs() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<Vec<u8>>::new().unwrap();
    let mut p = Process::new(put_ten_megabytes, (q.clone(),));
    p.start().unwrap();
    p.join_timeout(Duration::from_secs_f64(30.0)).unwrap();
    assert_eq!(
        p.exitcode().unwrap(),
        Some(0),
        "the child must exit without a reader"
    );
    let got = q.get_timeout(true, secs(30.0)).unwrap();
    assert_eq!(got.len(), 10_000_000);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

fn echo_sizes(q: Queue<Vec<u8>>, back: Queue<Vec<u8>>, n: u32) {
    for _ in 0..n {
        let m = q.get().unwrap();
        back.put(&m).unwrap();
    }
}

/// Messages longer than the ring are streamed through it, in both directions, intact.
#[test]
fn messages_longer_than_the_ring() {
    multiprocess::init_test();
    let _g = common::start();
    let there = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    let back = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    let sizes = [0usize, 1, 4091, 4092, 4093, 100_000, 3, 1 << 20];
    let mut p = Process::new(
        echo_sizes,
        (there.clone(), back.clone(), sizes.len() as u32),
    );
    p.start().unwrap();
    for (k, &n) in sizes.iter().enumerate() {
        let m: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
        there.put(&m).unwrap();
        assert_eq!(back.get_timeout(true, secs(60.0)).unwrap(), m, "size {n}");
    }
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

fn work_through(q: JoinableQueue<u32>, done: Queue<u32>) {
    while let Ok(item) = q.get_timeout(true, secs(1.0)) {
        done.put(&item).unwrap();
        q.task_done().unwrap();
    }
}

/// Q07: join returns once 4 workers marked all 10 items done; one more task_done is an error.
#[test]
fn q07_joinable_queue() {
    multiprocess::init_test();
    let _g = common::start();
    let q = JoinableQueue::<u32>::new().unwrap();
    let done = Queue::<u32>::new().unwrap();
    for i in 0..10 {
        q.put(&i).unwrap();
    }
    assert!(!q.join_timeout(Duration::from_secs_f64(0.05)).unwrap());
    let mut workers: Vec<Process> = (0..4)
        .map(|_| Process::new(work_through, (q.clone(), done.clone())))
        .collect();
    for w in &mut workers {
        w.start().unwrap();
    }
    assert!(q.join_timeout(Duration::from_secs_f64(60.0)).unwrap());
    assert_eq!(done.qsize(), 10);
    let mut items: Vec<u32> = (0..10).map(|_| done.get().unwrap()).collect();
    items.sort();
    assert_eq!(items, (0..10).collect::<Vec<_>>());
    let e = q.task_done().unwrap_err();
    assert_eq!(e.to_string(), "task_done() called too many times");
    for w in &mut workers {
        w.join().unwrap();
    }
}

/// Under fork, a captured queue is the same queue.
#[cfg(unix)]
#[test]
fn fork_children_share_a_captured_queue() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::<(u32, u32)>::new().unwrap();
    let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork).unwrap();
    let mut ps: Vec<Process> = (0..2)
        .map(|id| {
            let q = q.clone();
            ctx.process_closure(move || produce(q, id, 500))
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let got = consume(q, 1000);
    assert_per_producer_order(&got);
    for p in &mut ps {
        p.join().unwrap();
    }
}

fn drain_received(conn: multiprocess::Connection) -> Vec<u32> {
    let q: Queue<u32> = conn.recv().unwrap();
    (0..3).map(|_| q.get().unwrap()).collect()
}

/// A queue sent over a Connection arrives usable (its memory travels as an OS handle).
#[test]
fn a_queue_sent_over_a_connection() {
    multiprocess::init_test();
    let _g = common::start();
    let (ours, theirs) = multiprocess::pipe().unwrap();
    let mut p = Process::new(drain_received, (theirs,));
    p.start().unwrap();
    let q = Queue::<u32>::new().unwrap();
    ours.send(&q).unwrap();
    for i in [7, 8, 9] {
        q.put(&i).unwrap();
    }
    assert_eq!(p.result::<Vec<u32>>().unwrap(), [7, 8, 9]);
}

fn put_batches(q: Queue<(u32, u32)>, id: u32) {
    let items: Vec<(u32, u32)> = (0..2000).map(|i| (id, i)).collect();
    for batch in items.chunks(64) {
        q.put_many(batch).unwrap();
    }
}

/// put_many and get_many: items keep their order, nothing is lost, across a small ring.
#[test]
fn put_many_delivers_items_in_order() {
    multiprocess::init_test();
    let _g = common::start();
    let q = Queue::with_capacity(0, 4096).unwrap();
    let mut ps: Vec<Process> = (0..2)
        .map(|id| Process::new(put_batches, (q.clone(), id)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 4000 {
        got.extend(q.get_many(100, secs(60.0)).unwrap());
    }
    assert_eq!(got.len(), 4000);
    assert_per_producer_order(&got);
    for p in &mut ps {
        p.join().unwrap();
    }
    assert!(q.empty());
    assert!(matches!(q.get_many(10, secs(0.05)), Err(Error::Empty)));
    q.put_many(&[(9, 9), (9, 10)]).unwrap();
    assert_eq!(q.get_many(10, None).unwrap(), [(9, 9), (9, 10)]);
    let e = Queue::<Item>::new()
        .unwrap()
        .put_many(&[Item::Good(1), Item::Bad(Unencodable)])
        .unwrap_err();
    assert!(matches!(e, Error::Codec(_)));
}

/// `SimpleQueue::put_timeout` (beyond Python, whose SimpleQueue `put` blocks while its pipe is
/// full): with nobody taking items, puts of 1 MiB fill the queue's memory, then a put gives up
/// with `Error::Full` after its timeout, not before; the items put are intact and in order,
/// and once one is taken the next put goes in.
#[test]
fn simple_queue_put_gives_up_when_full() {
    multiprocess::init_test();
    let _g = common::start();
    let q = SimpleQueue::<Vec<u8>>::new().unwrap();
    let item = |k: usize| vec![k as u8; 1 << 20];
    let mut put = 0;
    let waited = loop {
        let t = Instant::now();
        match q.put_timeout(&item(put), secs(0.1)) {
            Ok(()) => put += 1,
            Err(Error::Full) => break t.elapsed(),
            Err(e) => panic!("{e}"),
        }
        // A hang guard only: the queue's memory is 64 MiB.
        assert!(put < 1000, "never full");
    };
    assert!(put > 0);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(q.get().unwrap(), item(0));
    q.put_timeout(&item(put), secs(30.0)).unwrap();
    for k in 1..=put {
        assert_eq!(q.get().unwrap(), item(k), "item {k}");
    }
    assert!(q.empty());
}

fn take_all(q: Queue<Vec<u8>>, n: u32) -> u32 {
    let mut sum = 0u32;
    for _ in 0..n {
        sum = sum.wrapping_add(q.get().unwrap()[0] as u32);
    }
    sum
}

/// `put_many_timeout` (beyond Python): with nobody taking items, a batch larger than the ring
/// (and one over a bounded queue's size) puts what fits and reports how many after the
/// timeout, not before; those are the first ones, in order; with a consumer in another
/// process, a batch of many times the ring goes in whole.
#[test]
fn put_many_timeout_puts_what_fits() {
    multiprocess::init_test();
    let _g = common::start();
    let items: Vec<Vec<u8>> = (0..1000u32).map(|i| vec![i as u8; 100]).collect();
    let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    let t = Instant::now();
    let put = q.put_many_timeout(&items, secs(0.15)).unwrap();
    let waited = t.elapsed();
    assert!(put > 0 && put < items.len(), "{put}");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    for (k, item) in items.iter().take(put).enumerate() {
        assert_eq!(&q.get().unwrap(), item, "item {k}");
    }
    assert!(q.empty());

    let bounded = Queue::<u32>::bounded(5).unwrap();
    assert_eq!(
        bounded
            .put_many_timeout(&[1, 2, 3, 4, 5, 6, 7], secs(0.05))
            .unwrap(),
        5
    );
    assert_eq!(bounded.get_many(10, None).unwrap(), [1, 2, 3, 4, 5]);

    let mut p = Process::new(take_all, (q.clone(), items.len() as u32));
    p.start().unwrap();
    assert_eq!(q.put_many_timeout(&items, secs(60.0)).unwrap(), items.len());
    let sum: u32 = items.iter().map(|i| i[0] as u32).sum();
    assert_eq!(
        p.result_timeout::<u32>(Duration::from_secs(60)).unwrap(),
        sum
    );
}
