//! Small helpers shared by the controllers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::hw::{HwError, HwResult};

/// Run a hardware call off the async executor.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> HwResult<T> + Send + 'static,
) -> HwResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(HwError::Invalid(format!("hardware task failed: {e}"))))
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
