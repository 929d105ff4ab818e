//! Logging that never blocks an event loop: log lines go through a bounded queue to a writer thread of their own,
//! which writes them to stderr. When stderr does not keep up (a pipe nobody reads, a slow terminal, a stalled log
//! collector), the queue fills and further lines are dropped and counted ([`dropped`], served as the metric
//! `kreisel_log_lines_dropped_total`) instead of making the event loop that logs wait.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines the queue holds at most.
pub const QUEUE_LINES: usize = 8192;
/// Bytes the queued lines may hold together.
pub const QUEUE_BYTES: usize = 2 << 20;
/// What the writer thread gathers into one write.
const BATCH_BYTES: usize = 64 << 10;

/// Log lines dropped because the queue was full or the output failed, since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped so far (see the module's documentation).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Message {
    Line(Vec<u8>),
    /// Everything before it is written (or given up on): tell the sender.
    Flush(SyncSender<()>),
}

/// The writing end handed to `tracing_subscriber` (a `MakeWriter`): each write is one log line, queued without
/// waiting.
#[derive(Clone)]
pub struct NonBlocking {
    queue: SyncSender<Message>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
}

impl NonBlocking {
    fn queue(&self, line: &[u8]) {
        let queued = self.queued.fetch_add(line.len(), Ordering::Relaxed);
        if queued + line.len() > QUEUE_BYTES {
            self.queued.fetch_sub(line.len(), Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Line(line.to_vec()))
        {
            self.queued.fetch_sub(line.len(), Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Write for &NonBlocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.queue(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = &'a NonBlocking;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Waits, when dropped, for the queued lines to be written, but not longer than [`Guard::FLUSH_TIMEOUT`] (a
/// blocked stderr must not keep the process from exiting).
pub struct Guard {
    queue: SyncSender<Message>,
}

impl Guard {
    pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
}

impl Drop for Guard {
    fn drop(&mut self) {
        let deadline = Instant::now() + Guard::FLUSH_TIMEOUT;
        let (done, wait) = sync_channel(1);
        let mut flush = Message::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    flush = again;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = wait.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Starts the writer thread over `out` (stderr in the binary).
pub fn spawn(out: impl Write + Send + 'static) -> io::Result<(NonBlocking, Guard)> {
    let (queue, lines) = sync_channel(QUEUE_LINES);
    let queued = Arc::new(AtomicUsize::new(0));
    let written = queued.clone();
    std::thread::Builder::new()
        .name("kreisel-log".into())
        .spawn(move || write_lines(lines, out, &written))?;
    Ok((
        NonBlocking {
            queue: queue.clone(),
            queued,
        },
        Guard { queue },
    ))
}

/// The writer thread: gathers what is queued into one buffer and writes it, until every sender is gone.
fn write_lines(lines: Receiver<Message>, mut out: impl Write, queued: &AtomicUsize) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut flushes = Vec::new();
    loop {
        let first = match lines.recv_timeout(Duration::from_secs(3600)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_BYTES {
                next = lines.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                // A closed or broken stderr: these lines are lost (and the router carries on).
                let lost = batch.iter().filter(|&&b| b == b'\n').count().max(1);
                DROPPED.fetch_add(lost as u64, Ordering::Relaxed);
            }
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
            batch.clear();
            if batch.capacity() > 4 * BATCH_BYTES {
                batch.shrink_to(BATCH_BYTES);
            }
        }
        for done in flushes.drain(..) {
            let _ = done.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An output that blocks until released, then records what it got.
    struct Gate {
        open: Arc<Mutex<bool>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            while !*self.open.lock().unwrap() {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_drops_and_counts_instead_of_waiting() {
        let open = Arc::new(Mutex::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (writer, guard) = spawn(Gate {
            open: open.clone(),
            got: got.clone(),
        })
        .unwrap();
        let before = dropped();
        let started = Instant::now();
        let line = [b'x'; 99];
        let mut line = line.to_vec();
        line.push(b'\n');
        let lines = QUEUE_LINES + 1000;
        for _ in 0..lines {
            (&writer).write_all(&line).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "writing never waits"
        );
        // The queue's lines and what the writer took before it blocked (at most one batch: lines until it holds
        // BATCH_BYTES or more) are kept.
        let lost = dropped() - before;
        assert!(
            lost >= 1000 - BATCH_BYTES.div_ceil(line.len()) as u64,
            "{lost} lines dropped"
        );
        *open.lock().unwrap() = true;
        drop(guard);
        let written = got.lock().unwrap().len() / line.len();
        assert_eq!(
            written as u64 + lost,
            lines as u64,
            "every line written or counted"
        );
        // Lines longer than the byte budget never fit.
        let huge = vec![b'y'; QUEUE_BYTES + 1];
        (&writer).write_all(&huge).unwrap();
        assert!(dropped() > before + lost);
    }
}
