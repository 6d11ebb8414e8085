//! The progress bar of a long sync (`join`, `sync`), drawn on stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use lattice_net::SyncProgress;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A progress bar on stderr, shown when a person watches this process. The task that draws it
/// is owned here: it ends when the sync drops its sender, or at [`finish`](Self::finish).
pub struct SyncBar {
    stop: CancellationToken,
    drawer: JoinHandle<()>,
}

impl SyncBar {
    /// The sender to hand to the sync, and the bar (none when not on a terminal).
    pub fn start(local: bool) -> (Option<watch::Sender<SyncProgress>>, Option<SyncBar>) {
        if !local || !std::io::stderr().is_terminal() {
            return (None, None);
        }
        let (tx, rx) = watch::channel(SyncProgress::default());
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} syncing {pos}/{len} entries ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let stop = CancellationToken::new();
        let drawer = tokio::spawn(draw(bar, rx, stop.clone()));
        (Some(tx), Some(SyncBar { stop, drawer }))
    }

    /// Stops drawing and clears the bar.
    pub async fn finish(bar: Option<SyncBar>) {
        if let Some(SyncBar { stop, drawer }) = bar {
            stop.cancel();
            if let Err(e) = drawer.await {
                tracing::debug!(error = %e, "the progress bar's task failed");
            }
        }
    }
}

/// Follows the sync's progress until it ends (its sender drops) or `stop`, then clears the bar.
async fn draw(bar: ProgressBar, mut rx: watch::Receiver<SyncProgress>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let p = *rx.borrow();
                bar.set_length(p.expected.max(p.received));
                bar.set_position(p.received);
            }
        }
    }
    bar.finish_and_clear();
}
