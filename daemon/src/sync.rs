//! Two small helpers every controller needs: a mutex lock that survives
//! poisoning, and running blocking work off the async executor.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, going on after a panic elsewhere poisoned it: every critical
/// section in bmcd leaves its value consistent, and one panic must not
/// take every later caller down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` (file, flash or hardware I/O) on tokio's blocking threads;
/// `lost` makes the error when the blocking task ended without an answer
/// (it panicked or was cancelled).
pub async fn off_runtime<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
    lost: impl FnOnce(String) -> E,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(lost(e.to_string())))
}
