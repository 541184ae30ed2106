//! The supervisor against simulated workers: scripted schedules for the hard cases, and a
//! seeded explorer of random interleavings.
//!
//! A simulated worker holds what a real one holds: a channel of orders with a byte capacity,
//! the task it runs, its count of tasks started, revocation marks, replies not yet read. Every
//! step is one thing that can happen in the real pool, in any order the real pool allows:
//! a worker takes an order, finishes a task, dies; its reader reads some replies or finds it
//! dead; a delivery or a worker start completes; time passes; the user submits, cancels,
//! closes or terminates. After every step the explorer checks:
//! - no task ends twice;
//! - no write exceeds a worker's channel (the flow-control invariant), except an order
//!   larger than the channel, and that only to a worker with nothing unanswered;
//! - no task starts twice, and none starts after its job was cancelled.
//!
//! And at the end of each schedule, once the world is left to run without new faults:
//! - every task submitted has ended (value, error, `WorkerLost`, time limit or `Cancelled`),
//!   no worker is left, and nothing is still to be done: nothing waits forever;
//! - a pool not terminated nor broken still runs a new task to its value.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::*;
use crate::pool::protocol::{Order, split};
use crate::pool::result::Payload;

/// A small deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// An order in a simulated channel.
struct Queued {
    order: Option<u64>, // task id; None: Stop
    cost: usize,
}

#[derive(Default)]
struct SimWorker {
    channel: VecDeque<Queued>,
    used: usize,
    /// The task running and the bytes of its order (freed when it replies).
    running: Option<(u64, usize)>,
    started: u32,
    revoked: HashMap<u64, bool>,
    replies: VecDeque<Incoming>,
    alive: bool,
    exitcode: i32,
    done: u64,
    /// Its reader has reported its end.
    reaped: bool,
}

impl SimWorker {
    /// It says goodbye and ends.
    fn leave(&mut self) {
        self.replies.push_back(Incoming::Bye);
        self.alive = false;
        self.exitcode = 0;
    }

    /// It has answered one more task; it leaves at `maxtasks`.
    fn answered(&mut self, maxtasks: Option<u64>) {
        self.done += 1;
        if maxtasks == Some(self.done) {
            self.leave();
        }
    }
}

struct World {
    sup: Supervisor,
    config: Config,
    now: Instant,
    rng: Rng,
    workers: BTreeMap<u64, SimWorker>,
    deliveries: VecDeque<Delivery>,
    starts: VecDeque<u64>,
    /// Task id → how it ended.
    ended: HashMap<u64, Outcome>,
    /// Task ids submitted, and their jobs (indices in `jobs`).
    submitted: BTreeMap<u64, usize>,
    /// Task ids started by a worker.
    started: std::collections::HashSet<u64>,
    /// Task ids of cancelled jobs that had not started when the job was cancelled.
    not_to_run: std::collections::HashSet<u64>,
    jobs: Vec<Arc<JobCore>>,
    next_id_seen: u64,
    /// Whether the initializer fails in new workers.
    init_fails: bool,
    log: Vec<String>,
}

fn ok() -> Outcome {
    Ok(Payload {
        message: Vec::new(),
        start: 0,
    })
}

impl World {
    fn new(seed: u64, config: Config) -> World {
        let mut w = World {
            sup: Supervisor::new(config.clone()),
            config,
            now: Instant::now(),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            workers: BTreeMap::new(),
            deliveries: VecDeque::new(),
            starts: VecDeque::new(),
            ended: HashMap::new(),
            submitted: BTreeMap::new(),
            started: Default::default(),
            not_to_run: Default::default(),
            jobs: Vec::new(),
            next_id_seen: 0,
            init_fails: false,
            log: Vec::new(),
        };
        let fx = w.sup.start_all();
        w.apply(fx);
        w
    }

    /// Takes in what the supervisor asked for; checks no task ends twice.
    fn apply(&mut self, fx: Effects) {
        for n in fx.kills {
            if let Some(w) = self.workers.get_mut(&n) {
                if w.alive {
                    w.alive = false;
                    w.exitcode = -9;
                }
            }
        }
        for (n, seq) in fx.revokes {
            if let Some(w) = self.workers.get_mut(&n) {
                w.revoked.insert(seq, true);
            }
        }
        self.deliveries.extend(fx.deliveries);
        self.starts.extend(fx.starts);
        for (task, outcome) in fx.finished {
            assert!(
                self.submitted.contains_key(&task.id),
                "task {} ended but was never submitted",
                task.id
            );
            if let Some(first) = self.ended.insert(task.id, outcome) {
                panic!(
                    "task {} ended twice (first {:?})\n{}",
                    task.id,
                    first.err(),
                    self.log.join("\n")
                );
            }
        }
    }

    fn submit(&mut self, tasks: usize, timeout: Option<Duration>) -> Option<Arc<JobCore>> {
        let job = JobCore::new(Some(tasks), None);
        let sizes: Vec<usize> = (0..tasks)
            .map(|_| match self.rng.below(10) {
                0 => self.config.channel_bytes + self.rng.below(500), // longer than the channel
                1 => self.config.channel_bytes / 2,
                _ => self.rng.below(200),
            })
            .collect();
        let args = sizes.iter().map(|&s| vec![0u8; s]).collect::<Vec<_>>();
        match self
            .sup
            .submit(Code::dummy(), args, &job, 0, timeout, self.now)
        {
            Ok(fx) => {
                for _ in sizes {
                    self.next_id_seen += 1;
                    self.submitted.insert(self.next_id_seen, self.jobs.len());
                }
                self.jobs.push(job.clone());
                self.log.push(format!("submit {tasks} {timeout:?}"));
                self.apply(fx);
                Some(job)
            }
            Err(_) => {
                self.log.push("submit refused".into());
                None
            }
        }
    }

    /// A delivery completes: its orders are written, within the channel's room.
    fn deliver(&mut self) {
        let Some(d) = self.deliveries.pop_front() else {
            return;
        };
        let n = d.worker;
        let cap = self.config.channel_bytes;
        let mut ok = false;
        if let Some(w) = self.workers.get_mut(&n) {
            ok = w.alive;
            for (head, args) in &d.messages {
                let order = match split::<Order>(head.as_bytes()) {
                    Ok((Order::Task { id, .. }, _)) => Some(id),
                    Ok((Order::Stop, _)) => None,
                    Err(e) => panic!("a garbled order: {e}"),
                };
                let cost = cost(args.len());
                let idle = w.used == 0 && w.running.is_none();
                assert!(
                    w.used + cost <= cap || idle || !w.alive,
                    "worker {n}: an order of {cost} bytes written with {} of {cap} used (would \
                     block on a busy worker)\n{}",
                    w.used,
                    self.log.join("\n")
                );
                if w.alive {
                    w.channel.push_back(Queued { order, cost });
                    w.used += cost;
                }
            }
        }
        self.log.push(format!("deliver {n} ok={ok}"));
        let fx = self.sup.delivered(n, ok, self.now);
        self.apply(fx);
    }

    fn start(&mut self) {
        let Some(n) = self.starts.pop_front() else {
            return;
        };
        if self.rng.chance(3) {
            self.log.push(format!("start {n} failed"));
            let fx = self.sup.start_failed(n, "no more processes");
            self.apply(fx);
            return;
        }
        let mut w = SimWorker {
            alive: true,
            ..SimWorker::default()
        };
        if self.init_fails {
            w.replies.push_back(Incoming::Reply {
                id: INIT,
                outcome: Err(Failure::Panicked("init".into())),
            });
            w.leave();
        } else {
            w.replies.push_back(Incoming::Reply {
                id: INIT,
                outcome: ok(),
            });
        }
        self.workers.insert(n, w);
        self.log.push(format!("start {n}"));
        let fx = self.sup.started(n, self.now);
        self.apply(fx);
    }

    /// Worker `n` takes its next order, or finishes the task it runs.
    fn work(&mut self, n: u64) {
        let maxtasks = self.config.maxtasks;
        let fail = self.rng.chance(10);
        let Some(w) = self.workers.get_mut(&n) else {
            return;
        };
        if !w.alive {
            return;
        }
        if let Some((id, cost)) = w.running.take() {
            w.replies.push_back(Incoming::Reply {
                id,
                outcome: if fail {
                    Err(Failure::Panicked("boom".into()))
                } else {
                    ok()
                },
            });
            w.used -= cost;
            w.answered(maxtasks);
            self.log.push(format!("worker {n} finishes {id}"));
            return;
        }
        let Some(q) = w.channel.pop_front() else {
            return;
        };
        match q.order {
            None => {
                w.used -= q.cost;
                w.leave();
                self.log.push(format!("worker {n} stops"));
            }
            Some(id) => {
                let seq = w.started as u64;
                w.started += 1;
                if w.revoked.remove(&seq).is_some() {
                    w.used -= q.cost;
                    w.replies.push_back(Incoming::Reply {
                        id,
                        outcome: Err(Failure::Cancelled),
                    });
                    w.answered(maxtasks);
                    self.log.push(format!("worker {n} skips {id}"));
                } else {
                    w.running = Some((id, q.cost));
                    self.log.push(format!("worker {n} starts {id}"));
                    assert!(
                        self.started.insert(id),
                        "task {id} started twice\n{}",
                        self.log.join("\n")
                    );
                    assert!(
                        !self.not_to_run.contains(&id),
                        "task {id} started after its job was cancelled\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    /// The reader of worker `n` reads some of its replies, or finds it ended.
    fn read(&mut self, n: u64) {
        let take = self.rng.below(4) + 1;
        let Some(w) = self.workers.get_mut(&n) else {
            return;
        };
        if w.reaped {
            return;
        }
        if !w.replies.is_empty() {
            let k = take.min(w.replies.len());
            let batch: Vec<Incoming> = w.replies.drain(..k).collect();
            self.log.push(format!("reader {n} reads {k}"));
            let fx = self.sup.replies(n, batch, self.now);
            self.apply(fx);
            return;
        }
        if !w.alive {
            // Found dead, or ending: reaped, then what it left is read.
            w.reaped = true;
            let (code, started) = (w.exitcode, w.started);
            self.log.push(format!("reader {n} reaps ({code})"));
            let fx = self.sup.ended(n, code, started, self.now);
            self.apply(fx);
        }
    }

    fn kill(&mut self, n: u64) {
        if let Some(w) = self.workers.get_mut(&n) {
            if w.alive {
                w.alive = false;
                w.exitcode = -9;
                self.log.push(format!("worker {n} dies"));
            }
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(self.rng.below(50) as u64);
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for n in ids {
            let fx = self.sup.expire(n, self.now);
            if !fx.kills.is_empty() {
                self.log.push(format!("worker {n} past its limit"));
            }
            self.apply(fx);
        }
    }

    /// One step of the world that moves work along (no new fault, no new work).
    fn progress(&mut self) -> bool {
        let mut choices: Vec<u8> = Vec::new();
        if !self.deliveries.is_empty() {
            choices.push(0);
        }
        if !self.starts.is_empty() {
            choices.push(1);
        }
        let live: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.reaped)
            .map(|(&n, _)| n)
            .collect();
        if !live.is_empty() {
            choices.push(2);
            choices.push(3);
        }
        if choices.is_empty() {
            return false;
        }
        match choices[self.rng.below(choices.len())] {
            0 => self.deliver(),
            1 => self.start(),
            2 => {
                let n = live[self.rng.below(live.len())];
                self.work(n);
            }
            _ => {
                let n = live[self.rng.below(live.len())];
                self.read(n);
            }
        }
        true
    }

    /// Whether anything is left to happen on its own.
    fn busy(&self) -> bool {
        !self.deliveries.is_empty()
            || !self.starts.is_empty()
            || self.workers.values().any(|w| {
                !w.reaped
                    && (!w.alive
                        || !w.replies.is_empty()
                        || w.running.is_some()
                        || !w.channel.is_empty())
            })
    }

    /// Lets the world run without faults until nothing is left to happen.
    fn settle(&mut self) {
        for _ in 0..200_000 {
            if !self.busy() {
                return;
            }
            if !self.progress() {
                return;
            }
            if self.rng.chance(5) {
                self.tick();
            }
        }
        panic!("the world never settled\n{}", self.log.join("\n"));
    }

    fn all_ended(&self) -> bool {
        self.submitted.keys().all(|id| self.ended.contains_key(id))
    }

    /// The end of a schedule: the world settles, every task has ended; the pool still runs
    /// a task (unless terminated or broken); after close, every worker leaves.
    fn finish(&mut self) {
        self.settle();
        let missing: Vec<u64> = self
            .submitted
            .keys()
            .filter(|id| !self.ended.contains_key(id))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "tasks {missing:?} never ended: something waits forever\n{}",
            self.log.join("\n")
        );
        if self.sup.phase() == Phase::Running && self.sup.broken.is_none() {
            let before = self.next_id_seen;
            if self.submit(1, None).is_some() {
                self.settle();
                let id = before + 1;
                match self.ended.get(&id) {
                    Some(Ok(_)) | Some(Err(Failure::Panicked(_))) => {}
                    other => panic!(
                        "the pool is not usable: a new task ended {other:?}\n{}",
                        self.log.join("\n")
                    ),
                }
            }
        }
        let fx = self.sup.close(self.now);
        self.apply(fx);
        self.settle();
        assert!(
            self.sup.all_ended(),
            "after close, {} workers are left with nothing to do\n{}",
            self.sup.workers(),
            self.log.join("\n")
        );
        assert!(self.all_ended());
    }
}

fn config(processes: usize, maxtasks: Option<u64>) -> Config {
    Config {
        processes,
        maxtasks,
        channel_bytes: 1024,
        depth: 4,
        retries: 0,
    }
}

/// Runs one random schedule.
fn explore(seed: u64) {
    let mut rng = Rng(seed | 1);
    let processes = 1 + rng.below(3);
    let maxtasks = rng.chance(30).then(|| 1 + rng.below(4) as u64);
    let mut world = World::new(seed, config(processes, maxtasks));
    world.init_fails = rng.chance(3);
    let steps = 50 + rng.below(250);
    for _ in 0..steps {
        match world.rng.below(100) {
            0..=9 => {
                let k = 1 + world.rng.below(6);
                let timeout = world
                    .rng
                    .chance(30)
                    .then(|| Duration::from_millis(world.rng.below(100) as u64));
                world.submit(k, timeout);
            }
            10..=13 => {
                let live: Vec<u64> = world.workers.keys().copied().collect();
                if !live.is_empty() {
                    let n = live[world.rng.below(live.len())];
                    world.kill(n);
                }
            }
            14..=16 => {
                if !world.jobs.is_empty() {
                    let j = world.rng.below(world.jobs.len());
                    let job = world.jobs[j].clone();
                    job.mark_cancelled();
                    let unstarted: Vec<u64> = world
                        .submitted
                        .iter()
                        .filter(|&(id, &job)| job == j && !world.started.contains(id))
                        .map(|(&id, _)| id)
                        .collect();
                    world.not_to_run.extend(unstarted);
                    world.log.push("cancel".into());
                    let fx = world.sup.cancel(&job);
                    world.apply(fx);
                }
            }
            17..=21 => world.tick(),
            22 if world.rng.chance(20) => {
                world.log.push("close".into());
                let fx = world.sup.close(world.now);
                world.apply(fx);
            }
            23 if world.rng.chance(10) => {
                world.log.push("terminate".into());
                let fx = world.sup.terminate();
                world.apply(fx);
            }
            _ => {
                world.progress();
            }
        }
    }
    world.finish();
}

/// Thousands of random schedules (`POOL_SCHEDULES` sets how many; the seed of a failing one
/// is in the panic message).
#[test]
fn random_schedules_end_every_task_exactly_once() {
    let runs: u64 = std::env::var("POOL_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    for seed in 1..=runs {
        if let Err(e) = std::panic::catch_unwind(|| explore(seed)) {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("schedule {seed} failed: {message}");
        }
    }
}
