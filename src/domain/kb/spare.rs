//! Work that runs on spare CPU only: one thread at the lowest scheduling priority.
//!
//! Suggestion searches help agents but are never urgent, and in a surge they competed
//! for the two cores with the sockets and the commit thread (about a tenth of the
//! server's CPU at 10,000 msg/s). On this thread they take only what nothing else
//! wants: the kernel runs a task at nice 19 whenever a core would otherwise idle, and
//! preempts it as soon as normal work wakes up. A job that waited longer than its
//! deadline is dropped unrun, and a full queue refuses new jobs, so a long surge
//! thins suggestions out instead of piling them up.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A lazily started low-priority thread with a short queue.
pub struct SpareCpu {
    name: &'static str,
    queue: usize,
    tx: OnceLock<Option<SyncSender<(Instant, Job)>>>,
}

impl SpareCpu {
    /// `queue` jobs may wait besides the one running.
    pub fn new(name: &'static str, queue: usize) -> SpareCpu {
        SpareCpu {
            name,
            queue,
            tx: OnceLock::new(),
        }
    }

    /// Queue `f`; `None` when the queue is full (or the thread could not start). The
    /// receiver yields `f`'s result, or an error when the job was dropped because it
    /// waited longer than `deadline`.
    pub fn try_run<T, F>(&self, deadline: Duration, f: F) -> Option<oneshot::Receiver<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let tx = self.tx.get_or_init(|| self.start()).as_ref()?;
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        let expires = Instant::now() + deadline;
        tx.try_send((expires, job)).ok().map(|()| rx)
    }

    fn start(&self) -> Option<SyncSender<(Instant, Job)>> {
        let (tx, rx) = sync_channel::<(Instant, Job)>(self.queue);
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                lowest_priority();
                // Ends when the owner (and with it the sender) is dropped.
                for (expires, job) in rx {
                    if Instant::now() <= expires {
                        job();
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, thread = self.name, "cannot start a background thread; its work is skipped");
                None
            }
        }
    }
}

/// Lower the calling thread to nice 19. On Linux the nice value is per thread, and
/// raising one's own nice value needs no privilege.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads only its integer arguments; `who` = 0 names the
        // calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_low_refuses_when_full_and_drops_late_ones() {
        let lane = SpareCpu::new("spare-test", 1);
        // The job runs on the lane's thread, at nice 19 (field 19 of the thread's stat).
        let nice = lane
            .try_run(Duration::from_secs(5), || {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
                let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split(' ').collect();
                fields.get(17).map(|s| s.to_string())
            })
            .unwrap()
            .await
            .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(nice.as_deref(), Some("19"));
        }
        // Hold the thread, fill the one slot, and the next job is refused.
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let busy = lane
            .try_run(Duration::from_secs(5), move || {
                started_tx.send(()).unwrap();
                wait.recv().is_ok()
            })
            .unwrap();
        started.recv().unwrap();
        let late = lane.try_run(Duration::ZERO, || 1).expect("one slot free");
        assert!(lane.try_run(Duration::from_secs(5), || 2).is_none());
        std::thread::sleep(Duration::from_millis(5));
        go.send(()).unwrap();
        assert_eq!(busy.await, Ok(true));
        // Its deadline passed while it waited: dropped unrun.
        assert!(late.await.is_err());
    }
}
