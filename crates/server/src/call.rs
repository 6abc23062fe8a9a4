//! Running an engine call from a handler: on a blocking thread, at most one per core at a
//! time, with the engine's errors in the API's shape; and the batch limit every batch
//! route checks first.

use std::sync::Arc;

use steerfeed::Engine;

use crate::AppState;
use crate::error::ApiError;

/// Runs `f` on the loaded engine on a blocking thread: 503 while the engine loads, the
/// engine's error mapped by class, 500 (logged) if the call panicked.
pub async fn run<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Engine) -> steerfeed::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let engine: Arc<Engine> = state.engine().cloned().ok_or_else(ApiError::not_ready)?;
    // At most one engine call per core at a time: more would only share the cores and
    // stretch every request's latency; waiting here keeps the tail short.
    let _permit = state
        .engine_slots()
        .acquire()
        .await
        .map_err(|_| ApiError::not_ready())?;
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("engine call failed: {e}"))),
    }
}

/// 413 `too_large` when a batch of `got` items is over `limit`, naming the field.
pub fn check_batch(field: &'static str, got: usize, limit: usize) -> Result<(), ApiError> {
    if got > limit {
        return Err(ApiError::too_large(format!(
            "{field}: {got} items exceed the batch limit of {limit}"
        ))
        .with_field(field));
    }
    Ok(())
}
