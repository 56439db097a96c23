//! Micro-batching for model serving: concurrent single requests are coalesced
//! into one model call (up to `max_batch_size` items or `max_wait` after the
//! first item), behind a bounded queue that sheds load with `QueueFull`
//! instead of letting latency grow.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// Tuning knobs for a [`Batcher`].
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Most items per model call. 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a batch waits for company, counted from its first item's
    /// submission. Zero turns batching off.
    pub max_wait: Duration,
    /// Items that may wait in the queue before `submit` answers `QueueFull`.
    pub queue_capacity: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self { max_batch_size: 64, max_wait: Duration::from_millis(1), queue_capacity: 4096 }
    }
}

/// Why an item got no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue already holds `capacity` waiting items; shed the request.
    QueueFull { capacity: usize },
    /// The batcher was closed (or its worker is gone).
    Closed,
    /// The model call for this item's batch panicked (message attached) or
    /// returned the wrong number of results.
    Failed(String),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { capacity } => {
                write!(f, "batcher queue full ({capacity} items waiting)")
            }
            Self::Closed => f.write_str("batcher closed"),
            Self::Failed(msg) => write!(f, "batch failed: {msg}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// The model call: runs on tokio's blocking pool (`spawn_blocking`), gets the
/// items in arrival order, returns one result per item, in order.
pub trait BatchFn<I, O>: Fn(Vec<I>) -> Vec<O> + Send + Sync + 'static {}

impl<I, O, F> BatchFn<I, O> for F where F: Fn(Vec<I>) -> Vec<O> + Send + Sync + 'static {}

/// Metrics hooks (e.g. Prometheus histograms/gauges), called by the worker
/// each time it dispatches a batch.
pub trait BatchObserver: Send + Sync {
    /// A batch of `size` items was handed to the model; `waited` is how long
    /// its oldest item had been waiting since `submit`.
    fn batch(&self, _size: usize, _waited: Duration) {}
    /// Items still waiting in the queue at dispatch time.
    fn queue_depth(&self, _depth: usize) {}
}

/// Observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl BatchObserver for NoopObserver {}

type Reply<O> = oneshot::Sender<Result<O, SubmitError>>;

struct Job<I, O> {
    item: I,
    reply: Reply<O>,
    enqueued: Instant,
}

/// Shutdown signal shared by the handles and the worker. Kept apart from the
/// sender so the worker holds no sender: dropping every handle then ends it.
struct Control {
    closed: AtomicBool,
    wake: Notify,
}

struct Inner<I, O> {
    tx: mpsc::Sender<Job<I, O>>,
    ctl: Arc<Control>,
    /// Its sender lives in the worker; it is dropped when the worker is done.
    done: watch::Receiver<()>,
    capacity: usize,
}

/// Handle to one micro-batching worker. Cheap to clone.
pub struct Batcher<I, O> {
    inner: Arc<Inner<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker task. Must be called inside a tokio runtime.
    pub fn spawn(config: BatcherConfig, f: impl BatchFn<I, O>, observer: Arc<dyn BatchObserver>) -> Self {
        let capacity = config.queue_capacity.max(1); // tokio rejects 0
        let (tx, rx) = mpsc::channel(capacity);
        let (done_tx, done) = watch::channel(());
        let ctl = Arc::new(Control { closed: AtomicBool::new(false), wake: Notify::new() });
        let worker = Worker {
            rx,
            ctl: Arc::clone(&ctl),
            f: Arc::new(f),
            observer,
            // Either knob at its "off" value means one item per call.
            max_batch: if config.max_wait.is_zero() { 1 } else { config.max_batch_size.max(1) },
            max_wait: config.max_wait,
            _done: done_tx,
        };
        tokio::spawn(worker.run());
        Self { inner: Arc::new(Inner { tx, ctl, done, capacity }) }
    }

    /// Queues `item` and waits for its result. Never waits for queue space:
    /// a full queue answers `QueueFull` at once. Dropping the returned future
    /// is fine; the item may still run and its answer is discarded.
    pub async fn submit(&self, item: I) -> Result<O, SubmitError> {
        if self.inner.ctl.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job { item, reply, enqueued: Instant::now() };
        match self.inner.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(SubmitError::QueueFull { capacity: self.inner.capacity });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SubmitError::Closed),
        }
        // A dropped reply sender means the worker went away without answering.
        answer.await.unwrap_or(Err(SubmitError::Closed))
    }

    /// Items waiting in the queue (not yet taken into a batch).
    pub fn queue_depth(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Stops taking new items; items already accepted are still run and
    /// answered. Returns once the worker has finished. Safe to call repeatedly
    /// and from several clones.
    pub async fn close(&self) {
        self.inner.ctl.closed.store(true, Ordering::Release);
        // notify_one keeps a permit if the worker is busy, so it is not lost.
        self.inner.ctl.wake.notify_one();
        let mut done = self.inner.done.clone();
        // Nothing is ever sent: this returns Err once the worker drops the sender.
        let _ = done.changed().await;
    }
}

struct Worker<I, O, F> {
    rx: mpsc::Receiver<Job<I, O>>,
    ctl: Arc<Control>,
    f: Arc<F>,
    observer: Arc<dyn BatchObserver>,
    max_batch: usize,
    max_wait: Duration,
    /// Dropped when `run` returns, which releases `close()` callers.
    _done: watch::Sender<()>,
}

impl<I, O, F> Worker<I, O, F>
where
    I: Send + 'static,
    O: Send + 'static,
    F: BatchFn<I, O>,
{
    async fn run(mut self) {
        // Pipelining: at most one batch on the blocking pool while the next
        // one is collected here.
        let mut running: Option<JoinHandle<()>> = None;
        let mut rx_closed = false;
        // Bounded so a huge max_batch_size ("no limit") doesn't over-allocate.
        let cap = self.max_batch.min(1024);

        loop {
            if !rx_closed && self.ctl.closed.load(Ordering::Acquire) {
                // Refuses new sends but keeps what is buffered for draining.
                self.rx.close();
                rx_closed = true;
            }

            // 1. Wait for the first item (or a close request).
            let first = tokio::select! {
                biased;
                job = self.rx.recv() => job,
                _ = self.ctl.wake.notified(), if !rx_closed => continue,
            };
            let Some(first) = first else { break }; // closed and drained

            let deadline = first.enqueued + self.max_wait;
            let mut items = Vec::with_capacity(cap);
            let mut replies = Vec::with_capacity(cap);
            items.push(first.item);
            replies.push(first.reply);
            let oldest = first.enqueued;

            // 2. Collect until full or max_wait after the first submission.
            // Whatever is already queued is taken even past the deadline:
            // that costs no latency. An idle model does not wait at all: at
            // low load a request goes straight in (a sub-millisecond wait
            // would cost a whole timer tick), and under load the batch fills
            // while the previous one runs (step 3).
            let model_idle = running.as_ref().is_none_or(JoinHandle::is_finished);
            while items.len() < self.max_batch {
                if let Ok(job) = self.rx.try_recv() {
                    items.push(job.item);
                    replies.push(job.reply);
                    continue;
                }
                if model_idle || Instant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    biased;
                    r = timeout_at(deadline, self.rx.recv()) => match r {
                        Ok(Some(job)) => {
                            items.push(job.item);
                            replies.push(job.reply);
                        }
                        Ok(None) | Err(_) => break, // drained, or deadline
                    },
                    // Closing: flush now rather than sit out max_wait.
                    // (close() sets the flag before notifying; the loop top sees it.)
                    _ = self.ctl.wake.notified(), if !rx_closed => break,
                }
            }

            // 3. The model is still busy with the previous batch: keep
            // topping this one up instead of idling, so a slow model gets
            // fuller batches (this is where batching gains throughput).
            if let Some(mut prev) = running.take() {
                let mut prev_done = false;
                while items.len() < self.max_batch {
                    tokio::select! {
                        biased;
                        _ = &mut prev => {
                            prev_done = true;
                            break;
                        }
                        job = self.rx.recv() => match job {
                            Some(job) => {
                                items.push(job.item);
                                replies.push(job.reply);
                            }
                            None => break,
                        },
                    }
                }
                // A JoinHandle must not be polled again once it has completed.
                if !prev_done {
                    let _ = prev.await;
                }
            }

            // 4. Dispatch.
            self.observer.batch(items.len(), oldest.elapsed());
            self.observer.queue_depth(self.rx.len());
            let f = Arc::clone(&self.f);
            running = Some(tokio::task::spawn_blocking(move || run_batch(&*f, items, replies)));
        }

        if let Some(prev) = running {
            let _ = prev.await;
        }
    }
}

/// Runs the model and answers every caller from the blocking thread, so the
/// worker never has to hop back to deliver results.
fn run_batch<I, O>(f: &impl BatchFn<I, O>, items: Vec<I>, replies: Vec<Reply<O>>) {
    let n = replies.len();
    // Catch the panic here (rather than via JoinError) because the reply
    // senders must outlive the call to report the failure.
    let failure = match catch_unwind(AssertUnwindSafe(|| f(items))) {
        Ok(outs) if outs.len() == n => {
            for (reply, out) in replies.into_iter().zip(outs) {
                let _ = reply.send(Ok(out)); // Err: caller gave up; discard
            }
            return;
        }
        Ok(outs) => format!("batch fn returned {} results for {n} items", outs.len()),
        Err(payload) => panic_message(payload.as_ref()),
    };
    for reply in replies {
        let _ = reply.send(Err(SubmitError::Failed(failure.clone())));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "batch fn panicked".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    type Batches = Arc<Mutex<Vec<Vec<u64>>>>;

    fn cfg(max_batch_size: usize, max_wait_ms: u64, queue_capacity: usize) -> BatcherConfig {
        BatcherConfig { max_batch_size, max_wait: Duration::from_millis(max_wait_ms), queue_capacity }
    }

    /// f = item * 2, recording each batch it was given.
    fn doubling(delay: Duration) -> (Batches, impl BatchFn<u64, u64>) {
        let seen: Batches = Arc::default();
        let log = Arc::clone(&seen);
        let f = move |items: Vec<u64>| {
            log.lock().unwrap().push(items.clone());
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            items.into_iter().map(|x| x * 2).collect()
        };
        (seen, f)
    }

    fn noop() -> Arc<dyn BatchObserver> {
        Arc::new(NoopObserver)
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<usize>>);
    impl BatchObserver for Recorder {
        fn batch(&self, size: usize, _waited: Duration) {
            self.0.lock().unwrap().push(size);
        }
    }

    /// Polls a future exactly once, so a test knows `submit` has enqueued
    /// (or been refused) without racing on task scheduling.
    async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submits_are_batched_and_each_caller_gets_its_answer() {
        let (seen, f) = doubling(Duration::from_millis(2));
        let rec = Arc::new(Recorder::default());
        let b = Batcher::spawn(cfg(16, 10, 4096), f, rec.clone());
        let tasks: Vec<_> = (0..100u64)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.submit(i).await) })
            })
            .collect();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert_eq!(r, Ok(i * 2));
        }
        let batches = seen.lock().unwrap().clone();
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 16));
        let mut all: Vec<u64> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(batches.len() < 100, "no coalescing happened");
        let sizes = rec.0.lock().unwrap().clone();
        assert_eq!(sizes, batches.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_lone_item_on_an_idle_model_does_not_wait() {
        let (_, f) = doubling(Duration::ZERO);
        let b = Batcher::spawn(cfg(64, 200, 64), f, noop());
        let t0 = Instant::now();
        assert_eq!(b.submit(21).await, Ok(42));
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(100), "an idle model waited out max_wait: {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batching_off_gives_batches_of_one() {
        // max_batch_size 1, and max_wait 0 with a large max_batch_size.
        for config in [cfg(1, 5, 64), cfg(64, 0, 64)] {
            let (seen, f) = doubling(Duration::from_millis(1));
            let b = Batcher::spawn(config, f, noop());
            let tasks: Vec<_> = (0..20u64)
                .map(|i| {
                    let b = b.clone();
                    tokio::spawn(async move { (i, b.submit(i).await) })
                })
                .collect();
            for t in tasks {
                let (i, r) = t.await.unwrap();
                assert_eq!(r, Ok(i * 2));
            }
            let batches = seen.lock().unwrap().clone();
            assert_eq!(batches.len(), 20);
            assert!(batches.iter().all(|b| b.len() == 1));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_answers_queue_full_at_once() {
        let open = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let (o, s) = (Arc::clone(&open), Arc::clone(&started));
        let f = move |items: Vec<u64>| {
            s.fetch_add(1, Ordering::SeqCst);
            while !o.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            items.into_iter().map(|x| x * 2).collect()
        };
        let b = Batcher::spawn(cfg(1, 1, 4), f, noop());

        let mut accepted = Vec::new();
        let mut first = Box::pin(b.submit(0));
        assert!(poll_once(&mut first).await.is_none());
        accepted.push((0, first));
        wait_until("model busy", || started.load(Ordering::SeqCst) == 1).await;
        // The worker takes the next item into the batch it is collecting...
        let mut second = Box::pin(b.submit(1));
        assert!(poll_once(&mut second).await.is_none());
        accepted.push((1, second));
        wait_until("second item taken", || b.queue_depth() == 0).await;
        // ...and then `queue_capacity` more can wait.
        for i in 2..6u64 {
            let mut fut = Box::pin(b.submit(i));
            assert!(poll_once(&mut fut).await.is_none(), "item {i} refused");
            accepted.push((i, fut));
        }
        assert_eq!(b.queue_depth(), 4);

        let mut extra = Box::pin(b.submit(99));
        let t0 = Instant::now();
        // Ready on the very first poll: submit never waits on a full queue.
        assert_eq!(poll_once(&mut extra).await, Some(Err(SubmitError::QueueFull { capacity: 4 })));
        assert!(t0.elapsed() < Duration::from_millis(50));

        open.store(true, Ordering::SeqCst);
        for (i, fut) in accepted {
            assert_eq!(fut.await, Ok(i * 2));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panic_fails_only_that_batch() {
        let f = |items: Vec<u64>| {
            assert!(!items.contains(&13), "boom on 13");
            items.into_iter().map(|x| x * 2).collect()
        };
        let b = Batcher::spawn(cfg(8, 50, 64), f, noop());
        // 13 and 7 land in one batch (both well within max_wait).
        let (a, c) = tokio::join!(b.submit(13), b.submit(7));
        for r in [a, c] {
            match r {
                Err(SubmitError::Failed(msg)) => assert!(msg.contains("boom on 13"), "{msg}"),
                other => panic!("expected Failed, got {other:?}"),
            }
        }
        assert_eq!(b.submit(5).await, Ok(10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_answers_accepted_items_then_refuses() {
        let (_, f) = doubling(Duration::from_millis(20));
        let b = Batcher::spawn(cfg(4, 5, 64), f, noop());
        let mut futs = Vec::new();
        for i in 0..10u64 {
            let mut fut = Box::pin(b.submit(i));
            assert!(poll_once(&mut fut).await.is_none());
            futs.push((i, fut));
        }
        b.close().await;
        // Worker is done, so every accepted item already has its answer.
        for (i, mut fut) in futs {
            assert_eq!(poll_once(&mut fut).await, Some(Ok(i * 2)));
        }
        assert_eq!(b.submit(1).await, Err(SubmitError::Closed));
        assert_eq!(b.clone().submit(2).await, Err(SubmitError::Closed));
        b.close().await; // idempotent
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_caller_does_not_break_the_batch() {
        let (seen, f) = doubling(Duration::ZERO);
        let b = Batcher::spawn(cfg(8, 50, 64), f, noop());
        let mut gone = Box::pin(b.submit(1));
        assert!(poll_once(&mut gone).await.is_none()); // enqueued...
        drop(gone); // ...then abandoned
        let (x, y) = tokio::join!(b.submit(2), b.submit(3));
        assert_eq!((x, y), (Ok(4), Ok(6)));
        assert_eq!(seen.lock().unwrap()[0], vec![1, 2, 3]);
        assert_eq!(b.submit(4).await, Ok(8));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_model_pipelines_and_fills_batches() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let seen: Batches = Arc::default();
        let (fl, pk, log) = (in_flight.clone(), peak.clone(), seen.clone());
        let f = move |items: Vec<u64>| {
            let now = fl.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(now, Ordering::SeqCst);
            log.lock().unwrap().push(items.clone());
            std::thread::sleep(Duration::from_millis(100));
            fl.fetch_sub(1, Ordering::SeqCst);
            items.into_iter().map(|x| x * 2).collect()
        };
        let b = Batcher::spawn(cfg(16, 1, 64), f, noop());
        let lead = tokio::spawn({
            let b = b.clone();
            async move { b.submit(0).await }
        });
        wait_until("first batch running", || in_flight.load(Ordering::SeqCst) == 1).await;
        // Trickle items in, slower than max_wait: alone they would not batch.
        let mut tasks = Vec::new();
        for i in 1..=20u64 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move { (i, b.submit(i).await) }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(lead.await.unwrap(), Ok(0));
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert_eq!(r, Ok(i * 2));
        }
        assert_eq!(peak.load(Ordering::SeqCst), 1, "more than one batch ran at once");
        let batches = seen.lock().unwrap().clone();
        // The batch collected while the model was busy was topped up to full.
        assert_eq!(batches[1].len(), 16, "{batches:?}");
    }

    #[tokio::test]
    async fn dropping_every_handle_stops_the_worker() {
        let (_, f) = doubling(Duration::ZERO);
        let b = Batcher::spawn(cfg(8, 1, 8), f, noop());
        let done = b.inner.done.clone();
        assert_eq!(b.submit(1).await, Ok(2));
        drop(b);
        let mut done = done;
        let r = tokio::time::timeout(Duration::from_secs(1), done.changed()).await;
        assert!(matches!(r, Ok(Err(_))), "worker still running");
    }
}
