//! Lock helpers. A poisoned lock only means another thread panicked while holding it;
//! every structure here is left consistent between statements that can panic, so the
//! data is still good and the poison is ignored rather than spread as a panic.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Takes the read lock, ignoring poison.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the write lock, ignoring poison.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
