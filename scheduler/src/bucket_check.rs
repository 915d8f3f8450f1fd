//! Checks, before a run starts, that every S3 bucket it reads or writes
//! exists and that the credentials reach it, so that a typo in a root or a
//! wrong key fails in a second with the bucket named, not deep in a listing.
//!
//! Buckets read anonymously (`CHAINBATCH_S3_ANONYMOUS_BUCKETS`) are asked
//! without signing. On AWS a bucket in another region answers with its
//! region, which is asked again there and remembered for the bucket's
//! object store.

use aws_config::SdkConfig;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use chainbatch_executor::storage::s3;
use std::collections::BTreeMap;

/// `s3://bucket/...` → `bucket`.
fn bucket_of(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("s3://")?;
    Some(rest.split('/').next().unwrap_or(rest)).filter(|b| !b.is_empty())
}

/// How a bucket is asked: path-style at an S3-compatible endpoint; on AWS,
/// in the region the bucket names.
#[derive(Clone, Copy)]
struct Asking {
    path_style: bool,
    follow_region: bool,
}

fn client(conf: &SdkConfig, how: Asking, region: Option<&str>) -> aws_sdk_s3::Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(conf).force_path_style(how.path_style);
    if let Some(r) = region {
        s3 = s3.region(aws_config::Region::new(r.to_string()));
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

fn region_header(answer: &Result<Option<String>, SdkError<HeadBucketError>>) -> Option<String> {
    match answer {
        Ok(region) => region.clone(),
        Err(SdkError::ServiceError(s)) => s
            .raw()
            .headers()
            .get("x-amz-bucket-region")
            .map(str::to_string),
        Err(_) => None,
    }
}

/// HeadBucket on `bucket`; on AWS, asked again in the bucket's own region
/// when that differs. The region S3 named is remembered for the bucket's
/// store.
async fn head(
    conf: &SdkConfig,
    how: Asking,
    bucket: &str,
) -> Result<Option<String>, SdkError<HeadBucketError>> {
    let ask = |region: Option<String>| async move {
        client(conf, how, region.as_deref())
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(|o| o.bucket_region().map(str::to_string))
    };
    let mut answer = ask(None).await;
    if how.follow_region
        && let Some(region) = region_header(&answer)
    {
        s3::remember_region(bucket, &region);
        let asked_in = conf.region().map(|r| r.as_ref());
        if answer.is_err() && asked_in != Some(region.as_str()) {
            answer = ask(Some(region)).await;
        }
    }
    answer
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
    let custom = s3::custom_endpoint();
    let how = Asking {
        path_style: custom,
        follow_region: !custom,
    };
    let loader = || aws_config::defaults(aws_config::BehaviorVersion::latest());
    let anonymous = buckets.keys().any(|b| s3::is_anonymous(b));
    let unsigned = match anonymous {
        true => Some(loader().no_credentials().load().await),
        false => None,
    };
    let signed = match buckets.keys().all(|b| s3::is_anonymous(b)) {
        true => None,
        false => Some(loader().load().await),
    };
    for (bucket, (what, uri)) in buckets {
        let conf = match s3::is_anonymous(bucket) {
            true => unsigned.as_ref(),
            false => signed.as_ref(),
        }
        .expect("a configuration for each kind of bucket");
        let Err(e) = head(conf, how, bucket).await else {
            continue;
        };
        return Err(message(what, bucket, uri, &e));
    }
    Ok(())
}

fn message(what: &str, bucket: &str, uri: &str, e: &SdkError<HeadBucketError>) -> String {
    let status = match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    };
    let anonymous = s3::is_anonymous(bucket);
    match status {
        Some(404) => format!("{what}: bucket `{bucket}` does not exist ({uri})"),
        Some(403) if anonymous => format!(
            "{what}: anonymous access to bucket `{bucket}` is denied ({uri}); remove it from \
             {} to sign requests with AWS credentials",
            s3::ANONYMOUS_BUCKETS_ENV
        ),
        Some(403) => format!(
            "{what}: access to bucket `{bucket}` is denied ({uri}); check the AWS \
             credentials and the bucket's policy"
        ),
        Some(301) => format!(
            "{what}: bucket `{bucket}` is in another region ({uri}) and S3 did not name it; \
             set AWS_REGION to it"
        ),
        _ => format!(
            "{what}: cannot reach bucket `{bucket}` ({uri}): {}",
            DisplayErrorContext(e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn buckets_come_from_s3_uris_only() {
        assert_eq!(bucket_of("s3://data/eth/x"), Some("data"));
        assert_eq!(bucket_of("s3://data"), Some("data"));
        assert_eq!(bucket_of("s3://"), None);
        assert_eq!(bucket_of("/local/path"), None);
    }

    /// A fake S3 whose bucket lives in eu-west-3: a HeadBucket signed for
    /// that region gets 200, one signed for another gets S3's 301, an
    /// unsigned one 403; every answer names the region, as S3's do. Returns
    /// its URL and the credential scopes it was asked with.
    async fn fake_s3() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(vec![]));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16384];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let scope = request
                    .lines()
                    .find(|l| l.starts_with("authorization:"))
                    .and_then(|l| l.split("credential=").nth(1))
                    .and_then(|c| c.split('/').nth(2))
                    .unwrap_or("unsigned")
                    .to_string();
                let status = match scope.as_str() {
                    "eu-west-3" => "200 OK",
                    "unsigned" => "403 Forbidden",
                    _ => "301 Moved Permanently",
                };
                log.lock().unwrap().push(scope);
                let answer = format!(
                    "HTTP/1.1 {status}\r\nx-amz-bucket-region: eu-west-3\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    fn conf(url: &str, signed: bool) -> SdkConfig {
        let mut b = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(url);
        if signed {
            b = b.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )));
        }
        b.build()
    }

    const FOLLOW: Asking = Asking {
        path_style: true,
        follow_region: true,
    };

    #[tokio::test]
    async fn a_bucket_in_another_region_is_asked_again_there_and_remembered() {
        let (url, seen) = fake_s3().await;
        let region = head(&conf(&url, true), FOLLOW, "bucket-in-paris")
            .await
            .expect("asked again in eu-west-3");
        assert_eq!(region.as_deref(), Some("eu-west-3"));
        assert_eq!(*seen.lock().unwrap(), ["us-east-1", "eu-west-3"]);
        // The bucket's store is built for that region, without asking again.
        let known = chainbatch_executor::storage::s3::known_region("bucket-in-paris");
        assert_eq!(known.as_deref(), Some("eu-west-3"));
    }

    #[tokio::test]
    async fn at_an_s3_compatible_endpoint_the_configured_region_is_kept() {
        let (url, seen) = fake_s3().await;
        let how = Asking {
            path_style: true,
            follow_region: false,
        };
        let e = head(&conf(&url, true), how, "bucket-at-endpoint")
            .await
            .unwrap_err();
        assert_eq!(*seen.lock().unwrap(), ["us-east-1"]);
        let text = message("out_root", "bucket-at-endpoint", "s3://x", &e);
        assert!(text.contains("is in another region"), "{text}");
    }

    #[tokio::test]
    async fn anonymous_buckets_are_asked_unsigned() {
        let (url, seen) = fake_s3().await;
        let unsigned = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .no_credentials()
            .region(aws_config::Region::new("eu-west-3"))
            .endpoint_url(&url)
            .load()
            .await;
        let e = head(&unsigned, FOLLOW, "private-bucket").await.unwrap_err();
        assert_eq!(*seen.lock().unwrap(), ["unsigned"]);
        let text = message("raw", "aws-public-blockchain", "s3://x", &e);
        assert!(text.contains("anonymous access to bucket"), "{text}");
    }
}
