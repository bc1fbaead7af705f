//! A stop signal every task can wait for (tokio `watch`).

use tokio::sync::watch;

/// Sends the stop signal; clone [`Shutdown::subscribe`] receivers into tasks.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet sent.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// Sends the signal (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// True once the signal was sent.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver for a task.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Waits until `rx` sees the signal (or its sender is gone, which also means stop).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
