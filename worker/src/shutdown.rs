//! Graceful shutdown.
//!
//! Batch stops a container (job terminated, timeout, Fargate Spot
//! reclamation, scale-in) by sending SIGTERM and, after the stop timeout,
//! SIGKILL. On SIGTERM the worker takes no new image, lets the ones in flight
//! finish for a bounded time, and exits with the retryable code: images it
//! never reached stay QUEUED for the next attempt.

use std::sync::Arc;
use tokio::sync::watch;

/// Tells a run that it should stop taking new images. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
}

/// Requests a [`Shutdown`]; used by tests and by embedders.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    sender: Arc<watch::Sender<bool>>,
}

impl ShutdownTrigger {
    /// Requests the shutdown; later calls do nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Shutdown {
    /// A shutdown and the trigger that requests it.
    pub fn channel() -> (ShutdownTrigger, Shutdown) {
        let (sender, requested) = watch::channel(false);
        (
            ShutdownTrigger {
                sender: Arc::new(sender),
            },
            Shutdown { requested },
        )
    }

    /// A shutdown that is never requested.
    pub fn never() -> Shutdown {
        Self::channel().1
    }

    /// A shutdown requested by SIGTERM or SIGINT. Must be called inside a
    /// tokio runtime.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (trigger, shutdown) = Self::channel();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::warn!(
                signal = name,
                "shutdown requested: no new images will be started"
            );
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// True once the shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves when the shutdown is requested; never, if it cannot be.
    pub async fn requested(mut self) {
        if self
            .requested
            .wait_for(|requested| *requested)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_trigger_wakes_every_clone() {
        let (trigger, shutdown) = Shutdown::channel();
        let waiter = tokio::spawn(shutdown.clone().requested());
        assert!(!shutdown.is_requested());

        trigger.trigger();

        waiter.await.unwrap();
        assert!(shutdown.is_requested());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_that_cannot_be_requested_never_resolves() {
        let never = Shutdown::never();

        let waited =
            tokio::time::timeout(Duration::from_secs(3600), never.clone().requested()).await;

        assert!(waited.is_err());
        assert!(!never.is_requested());
    }
}
