//! Checks, before a run starts, that every S3 bucket it reads or writes
//! exists and that the credentials reach it, so that a typo in a root or a
//! wrong key fails in a second with the bucket named, not deep in a listing.

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use std::collections::BTreeMap;

/// `s3://bucket/...` → `bucket`.
fn bucket_of(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("s3://")?;
    Some(rest.split('/').next().unwrap_or(rest)).filter(|b| !b.is_empty())
}

async fn client() -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    // S3-compatible servers at an endpoint URL take path-style requests.
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// `roots` are (what, uri) pairs, `what` naming the setting or dataset.
pub async fn check(roots: &[(String, String)]) -> Result<(), String> {
    let mut buckets: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (what, uri) in roots {
        if let Some(b) = bucket_of(uri) {
            buckets.entry(b).or_insert((what, uri));
        }
    }
    if buckets.is_empty() {
        return Ok(());
    }
    let client = client().await;
    for (bucket, (what, uri)) in buckets {
        let Err(e) = client.head_bucket().bucket(bucket).send().await else {
            continue;
        };
        let status = match &e {
            SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
            _ => None,
        };
        return Err(match status {
            Some(404) => format!("{what}: bucket `{bucket}` does not exist ({uri})"),
            Some(403) => format!(
                "{what}: access to bucket `{bucket}` is denied ({uri}); check the AWS \
                 credentials and the bucket's policy"
            ),
            Some(301) => format!(
                "{what}: bucket `{bucket}` is in another region ({uri}); set AWS_REGION to it"
            ),
            _ => format!(
                "{what}: cannot reach bucket `{bucket}` ({uri}): {}",
                DisplayErrorContext(&e)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bucket_of;

    #[test]
    fn buckets_come_from_s3_uris_only() {
        assert_eq!(bucket_of("s3://data/eth/x"), Some("data"));
        assert_eq!(bucket_of("s3://data"), Some("data"));
        assert_eq!(bucket_of("s3://"), None);
        assert_eq!(bucket_of("/local/path"), None);
    }
}
