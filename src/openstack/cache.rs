//! Per-run caches: each flavor, image or user is fetched at most once per run,
//! however many projects, extractors and concurrent tasks ask for it
//! (cASO re-reads them for every project: defect 12).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::OpenStackError;

type Cell<V> = Arc<OnceCell<Option<Arc<V>>>>;

/// A concurrent-safe get-or-fetch map keyed by id. Concurrent callers for the
/// same id share one fetch. A `NotFound` answer is cached as `None` (a
/// deleted flavor or image stays deleted for the run); any other error is
/// returned and not cached, so a later caller tries again.
pub struct Cache<V> {
    cells: Mutex<HashMap<String, Cell<V>>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("len", &self.len()).finish()
    }
}

impl<V> Cache<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ids have been asked for.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cell<V>>> {
        self.cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached value for `id`, or the result of `fetch` (run at most once
    /// at a time per id). `Ok(None)` means the server said it does not exist.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        id: &str,
        fetch: F,
    ) -> Result<Option<Arc<V>>, OpenStackError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, OpenStackError>>,
    {
        let cell = self.lock().entry(id.to_string()).or_default().clone();
        cell.get_or_try_init(|| async {
            match fetch().await {
                Ok(v) => Ok(Some(Arc::new(v))),
                Err(OpenStackError::NotFound { what, id }) => {
                    tracing::debug!(what, id, "not found; remembered for this run");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
        .await
        .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_gets_share_one_fetch_and_not_found_is_cached() {
        let cache: Cache<String> = Cache::new();
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, OpenStackError>("v".to_string())
        };
        let (a, b) = tokio::join!(
            cache.get_or_fetch("x", fetch),
            cache.get_or_fetch("x", fetch)
        );
        assert_eq!(a.unwrap().as_deref().map(String::as_str), Some("v"));
        assert_eq!(b.unwrap().as_deref().map(String::as_str), Some("v"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let gone = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<String, _>(OpenStackError::NotFound {
                what: "thing",
                id: "y".into(),
            })
        };
        assert!(cache.get_or_fetch("y", gone).await.unwrap().is_none());
        assert!(cache.get_or_fetch("y", gone).await.unwrap().is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_errors_are_not_cached() {
        let cache: Cache<String> = Cache::new();
        let failing = || async {
            Err::<String, _>(OpenStackError::Malformed {
                what: "x".into(),
                detail: "y".into(),
            })
        };
        assert!(cache.get_or_fetch("k", failing).await.is_err());
        let ok = || async { Ok::<_, OpenStackError>("v".to_string()) };
        assert!(cache.get_or_fetch("k", ok).await.unwrap().is_some());
    }
}
