//! The one place where a URI becomes an object store: a local path,
//! `file://`, or `s3://bucket/key` (AWS or any S3-compatible endpoint).
//!
//! S3 credentials come from the AWS SDK's whole provider chain (environment,
//! profiles and their files, SSO, assume-role, web identity, container and
//! instance credentials); buckets listed in `CHAINBATCH_S3_ANONYMOUS_BUCKETS`
//! (default `aws-public-blockchain`) are read unsigned; on AWS each bucket is
//! reached in its own region. `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` point
//! at an S3-compatible server. See [`s3`]. Requests are retried with
//! exponential backoff.

pub mod s3;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use url::Url;

/// A URI resolved to its store and the object path inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store holding the object.
    pub store: Arc<dyn ObjectStore>,
    /// `file://` or `s3://bucket`: the key DataFusion registers stores by.
    pub store_url: ObjectStoreUrl,
    /// The object's path (key) inside the store.
    pub path: Path,
}

impl Location {
    /// The location of `relative` below this one.
    pub fn join(&self, relative: &str) -> Location {
        let base = self.path.as_ref().trim_end_matches('/');
        let rel = relative.trim_start_matches('/');
        let joined = if base.is_empty() {
            rel.to_string()
        } else {
            format!("{base}/{rel}")
        };
        Location {
            store: self.store.clone(),
            store_url: self.store_url.clone(),
            path: Path::from_url_path(&joined).unwrap_or_else(|_| Path::from(joined.as_str())),
        }
    }

    /// The full URI, for messages and manifests.
    pub fn uri(&self) -> String {
        format!("{}{}", self.store_url.as_str(), self.path)
    }
}

/// Why a URI could not be turned into a location.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI does not parse, has an unsupported scheme or names no bucket.
    #[error("{uri:?} is not a valid URI: {reason}")]
    BadUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store for the URI could not be opened.
    #[error("cannot open store for {uri:?}: {source}")]
    Store {
        /// The URI as given.
        uri: String,
        /// The object store's error.
        source: object_store::Error,
    },
}

/// Stores are opened once per process and reused, keeping their connection
/// pools. An S3 store's connections live on the tokio runtime that first used
/// it, so a process uses one runtime for storage (the task binary its own, a
/// Ballista executor the runtime its tasks run on).
fn stores() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// Turns `uri` (a plain path, `file://...` or `s3://bucket/key`) into a location.
pub fn resolve(uri: &str) -> Result<Location, StorageError> {
    let url = to_url(uri)?;
    let bad = |reason: &str| StorageError::BadUri {
        uri: uri.to_string(),
        reason: reason.to_string(),
    };
    let (key, store_url) = match url.scheme() {
        "file" => ("file://".to_string(), "file://".to_string()),
        "s3" | "s3a" => {
            let bucket = url.host_str().ok_or_else(|| bad("no bucket"))?;
            (format!("s3://{bucket}"), format!("s3://{bucket}"))
        }
        other => {
            return Err(bad(&format!(
                "unsupported scheme {other:?}; use a path, file:// or s3://"
            )));
        }
    };
    let store = {
        let mut map = stores().lock().expect("store registry poisoned");
        match map.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = open_store(&url).map_err(|source| StorageError::Store {
                    uri: uri.to_string(),
                    source,
                })?;
                map.insert(key, s.clone());
                s
            }
        }
    };
    let path = Path::from_url_path(url.path()).map_err(|e| bad(&e.to_string()))?;
    Ok(Location {
        store,
        store_url: ObjectStoreUrl::parse(&store_url).map_err(|e| bad(&e.to_string()))?,
        path,
    })
}

/// Makes the store of `uri` known to a DataFusion runtime.
pub fn register(runtime: &RuntimeEnv, uri: &str) -> Result<Location, StorageError> {
    let loc = resolve(uri)?;
    runtime.register_object_store(loc.store_url.as_ref(), loc.store.clone());
    Ok(loc)
}

/// An object store registry that opens stores on first use, the way
/// [`resolve`] does: a Ballista executor learns which buckets a plan reads
/// only when its tasks arrive.
#[derive(Debug, Default)]
pub struct StoreRegistry;

impl datafusion::execution::object_store::ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        stores()
            .lock()
            .expect("store registry poisoned")
            .insert(key, store)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        resolve(url.as_str())
            .map(|loc| loc.store)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }
}

fn to_url(uri: &str) -> Result<Url, StorageError> {
    if uri.contains("://") {
        return Url::parse(uri).map_err(|e| StorageError::BadUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        });
    }
    let path = std::path::Path::new(uri);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| StorageError::BadUri {
                uri: uri.to_string(),
                reason: e.to_string(),
            })?
            .join(path)
    };
    // `..` is resolved by hand: object paths may not contain it.
    let mut clean = std::path::PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Url::from_file_path(&clean).map_err(|_| StorageError::BadUri {
        uri: uri.to_string(),
        reason: "not an absolute path".into(),
    })
}

/// Throttling (503 SlowDown), 5xx and connection errors are retried with
/// exponential backoff from 100 ms up to 15 s, at most
/// `CHAINBATCH_S3_MAX_RETRIES` times (default 10) and for at most
/// `CHAINBATCH_S3_RETRY_TIMEOUT_SECS` (default 180) per request.
fn retry_config() -> RetryConfig {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: env("CHAINBATCH_S3_MAX_RETRIES", 10) as usize,
        retry_timeout: Duration::from_secs(env("CHAINBATCH_S3_RETRY_TIMEOUT_SECS", 180)),
    }
}

fn open_store(url: &Url) -> object_store::Result<Arc<dyn ObjectStore>> {
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        _ => Ok(Arc::new(s3::S3Store::new(
            url.host_str().unwrap_or_default(),
            retry_config(),
        ))),
    }
}
