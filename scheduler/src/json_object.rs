//! chainbatch's own state documents (journals, backfill records, stage
//! specs, ledger records): one JSON object each, written whole with one
//! PUT and read with one GET, so a reader sees a document or its previous
//! version, never part of one.

use chainbatch_executor::storage;
use object_store::ObjectStoreExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Writes `value` at `uri`; `what` names it in the error.
pub async fn put<T: Serialize>(uri: &str, value: &T, what: &str) -> Result<(), String> {
    let loc = storage::resolve(uri).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec_pretty(value).expect("state documents serialize");
    loc.store
        .put(&loc.path, body.into())
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot write {what} {}: {e}", loc.uri()))
}

/// Reads the document at `uri`, or `None` if there is none.
pub async fn get<T: DeserializeOwned>(uri: &str, what: &str) -> Result<Option<T>, String> {
    let loc = storage::resolve(uri).map_err(|e| e.to_string())?;
    let bytes = match loc.store.get(&loc.path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("corrupt {what} {}: {e}", loc.uri())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(format!("cannot read {what} {}: {e}", loc.uri())),
    }
}
