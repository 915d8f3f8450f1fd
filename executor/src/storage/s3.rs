//! S3 stores as a real AWS account needs them:
//!
//! * **Credentials** come from the whole chain the AWS SDKs resolve
//!   (environment, `AWS_PROFILE` and the `~/.aws/config` and
//!   `~/.aws/credentials` files with SSO, assume-role and
//!   `credential_process`, web identity, container and instance
//!   credentials), cached and refreshed before they expire.
//! * **Anonymous buckets** (`CHAINBATCH_S3_ANONYMOUS_BUCKETS`, a
//!   comma-separated list, default `aws-public-blockchain`) are read with
//!   unsigned requests, so public data needs no credentials.
//! * **Each bucket in its own region**: on AWS the store of a bucket is built
//!   for the region S3 names in its `x-amz-bucket-region` answer, found once
//!   per bucket and process. At an S3-compatible endpoint (`AWS_ENDPOINT_URL`)
//!   the configured region is kept.
//!
//! A bucket's store is built on its first request, on the runtime that makes
//! it, because finding the region and the credentials is asynchronous.

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::path::Path;
use object_store::{
    CopyOptions, CredentialProvider, GetOptions, GetResult, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    RetryConfig,
};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The setting that lists the buckets read without credentials.
pub const ANONYMOUS_BUCKETS_ENV: &str = "CHAINBATCH_S3_ANONYMOUS_BUCKETS";
/// Its value when unset: the AWS Public Blockchain dataset.
pub const DEFAULT_ANONYMOUS_BUCKETS: &str = "aws-public-blockchain";

/// Whether requests to `bucket` go unsigned.
pub fn is_anonymous(bucket: &str) -> bool {
    anonymous_in(std::env::var(ANONYMOUS_BUCKETS_ENV).ok().as_deref(), bucket)
}

fn anonymous_in(setting: Option<&str>, bucket: &str) -> bool {
    setting
        .unwrap_or(DEFAULT_ANONYMOUS_BUCKETS)
        .split(',')
        .map(str::trim)
        .any(|b| !b.is_empty() && b == bucket)
}

/// Whether S3 is an S3-compatible server at an endpoint URL rather than AWS.
pub fn custom_endpoint() -> bool {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

fn regions() -> &'static Mutex<HashMap<String, String>> {
    static REGIONS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    REGIONS.get_or_init(Default::default)
}

/// Records the region of `bucket` (the driver learns it from its `HeadBucket`
/// check), so that stores opened later in this process need not ask again.
pub fn remember_region(bucket: &str, region: &str) {
    regions()
        .lock()
        .expect("region cache poisoned")
        .insert(bucket.to_string(), region.to_string());
}

/// The region remembered for `bucket`, if any.
pub fn known_region(bucket: &str) -> Option<String> {
    regions()
        .lock()
        .expect("region cache poisoned")
        .get(bucket)
        .cloned()
}

/// The region configured for this process: `AWS_REGION` or
/// `AWS_DEFAULT_REGION`, else the profile's `region`, else `us-east-1`.
pub async fn configured_region() -> String {
    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .region()
        .await
        .map(|r| r.as_ref().to_string())
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// The region S3 names for `bucket`, asked of the S3 endpoint of `near` (a
/// region endpoint stays reachable through a VPC gateway endpoint). `None`
/// when S3 cannot be reached or does not say.
pub async fn detect_region(bucket: &str, near: &str) -> Option<String> {
    // Bucket names with dots do not match the TLS certificate of a
    // virtual-hosted name: ask path-style.
    let url = if bucket.contains('.') {
        format!("https://s3.{near}.amazonaws.com/{bucket}")
    } else {
        format!("https://{bucket}.s3.{near}.amazonaws.com")
    };
    region_at(&url).await
}

/// The `x-amz-bucket-region` header of an unsigned `HEAD` on `url`. S3 sends
/// it with every answer to `HeadBucket`: 200, the 301 of a bucket in another
/// region and the 403 of a private one alike.
pub async fn region_at(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Ok(answer) = client.head(url).send().await else {
            continue;
        };
        return answer
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
    }
    None
}

/// The region a bucket's store is built for.
async fn region_of(bucket: &str) -> String {
    let configured = configured_region().await;
    if custom_endpoint() {
        return configured;
    }
    if let Some(known) = known_region(bucket) {
        return known;
    }
    match detect_region(bucket, &configured).await {
        Some(region) => {
            remember_region(bucket, &region);
            region
        }
        // The requests themselves then fail with S3's own answer.
        None => configured,
    }
}

/// Credentials from the AWS SDK's provider chain (or any provider), served
/// to object_store: cached, and fetched anew five minutes before they
/// expire.
pub struct AwsChainCredentials {
    provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl std::fmt::Debug for AwsChainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsChainCredentials")
    }
}

/// How long before their expiry credentials are fetched again.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

impl AwsChainCredentials {
    /// The default chain, built on first use.
    pub fn default_chain() -> Self {
        AwsChainCredentials {
            provider: tokio::sync::OnceCell::new(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials from `provider`.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        AwsChainCredentials {
            provider: tokio::sync::OnceCell::new_with(Some(provider)),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn provider(&self) -> &SharedCredentialsProvider {
        self.provider
            .get_or_init(|| async {
                SharedCredentialsProvider::new(DefaultCredentialsChain::builder().build().await)
            })
            .await
    }
}

fn fresh(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    expiry.is_none_or(|e| now + REFRESH_BEFORE_EXPIRY < e)
}

#[async_trait]
impl CredentialProvider for AwsChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && fresh(*expiry, SystemTime::now())
        {
            return Ok(credential.clone());
        }
        let found = self
            .provider()
            .await
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: format!("no AWS credentials: {}", error_chain(&e)).into(),
            })?;
        let credential = Arc::new(AwsCredential {
            key_id: found.access_key_id().to_string(),
            secret_key: found.secret_access_key().to_string(),
            token: found.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), found.expiry()));
        Ok(credential)
    }
}

/// An error with its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The process's one credential chain, shared by every signed store.
fn shared_credentials() -> Arc<AwsChainCredentials> {
    static CREDENTIALS: OnceLock<Arc<AwsChainCredentials>> = OnceLock::new();
    CREDENTIALS
        .get_or_init(|| Arc::new(AwsChainCredentials::default_chain()))
        .clone()
}

/// The store of one bucket, built on its first request.
#[derive(Debug, Clone)]
pub struct S3Store {
    lazy: Arc<Lazy>,
}

#[derive(Debug)]
struct Lazy {
    bucket: String,
    retry: RetryConfig,
    inner: tokio::sync::OnceCell<Arc<dyn ObjectStore>>,
}

impl S3Store {
    /// The store of `bucket`, retrying requests per `retry`; nothing is
    /// contacted before the first request.
    pub fn new(bucket: &str, retry: RetryConfig) -> S3Store {
        S3Store {
            lazy: Arc::new(Lazy {
                bucket: bucket.to_string(),
                retry,
                inner: tokio::sync::OnceCell::new(),
            }),
        }
    }
}

impl Lazy {
    async fn store(&self) -> object_store::Result<Arc<dyn ObjectStore>> {
        self.inner
            .get_or_try_init(|| async {
                let region = region_of(&self.bucket).await;
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&self.bucket)
                    .with_region(region)
                    .with_retry(self.retry.clone());
                // S3-compatible servers (SeaweedFS, MinIO) serve buckets by path.
                if custom_endpoint() {
                    builder = builder.with_virtual_hosted_style_request(false);
                }
                builder = if is_anonymous(&self.bucket) {
                    builder.with_skip_signature(true)
                } else {
                    builder.with_credentials(shared_credentials())
                };
                Ok(Arc::new(builder.build()?) as Arc<dyn ObjectStore>)
            })
            .await
            .cloned()
    }
}

impl std::fmt::Display for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3({})", self.lazy.bucket)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.lazy
            .store()
            .await?
            .put_opts(location, payload, opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.lazy
            .store()
            .await?
            .put_multipart_opts(location, opts)
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.lazy.store().await?.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.lazy.store().await?.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let lazy = self.lazy.clone();
        futures::stream::once(async move { lazy.store().await.map(|s| s.delete_stream(locations)) })
            .try_flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let lazy = self.lazy.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move { lazy.store().await.map(|s| s.list(prefix.as_ref())) })
            .try_flatten()
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let lazy = self.lazy.clone();
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        futures::stream::once(async move {
            lazy.store()
                .await
                .map(|s| s.list_with_offset(prefix.as_ref(), &offset))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.lazy.store().await?.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.lazy.store().await?.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.lazy
            .store()
            .await?
            .rename_opts(from, to, options)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_public_dataset_is_anonymous_unless_the_setting_says_otherwise() {
        assert!(anonymous_in(None, "aws-public-blockchain"));
        assert!(!anonymous_in(None, "my-bucket"));
        assert!(anonymous_in(Some("a, my-bucket ,b"), "my-bucket"));
        assert!(!anonymous_in(Some("a,b"), "aws-public-blockchain"));
        assert!(!anonymous_in(Some(""), "aws-public-blockchain"));
    }

    /// Answers each connection with `status` and `headers`, as S3 answers a
    /// HeadBucket; returns its URL.
    async fn fake_s3(status: &'static str, headers: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let _ = conn.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn the_region_comes_from_the_head_bucket_answer_whatever_its_status() {
        for status in ["200 OK", "301 Moved Permanently", "403 Forbidden"] {
            let url = fake_s3(status, "x-amz-bucket-region: eu-west-3\r\n").await;
            assert_eq!(
                region_at(&url).await.as_deref(),
                Some("eu-west-3"),
                "{status}"
            );
        }
        // A missing bucket names no region, nor does an unreachable S3.
        let url = fake_s3("404 Not Found", "").await;
        assert_eq!(region_at(&url).await, None);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        assert_eq!(region_at(&closed).await, None);
    }

    #[test]
    fn credentials_are_fetched_again_five_minutes_before_they_expire() {
        let now = SystemTime::now();
        assert!(fresh(None, now));
        assert!(fresh(Some(now + Duration::from_secs(600)), now));
        assert!(!fresh(Some(now + Duration::from_secs(200)), now));
        assert!(!fresh(Some(now - Duration::from_secs(1)), now));
    }

    /// A provider that counts its calls and hands out credentials expiring
    /// after `lifetime`.
    #[derive(Debug)]
    struct Counting {
        calls: std::sync::atomic::AtomicUsize,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("key-{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn credentials_are_cached_until_close_to_expiry() {
        let creds = AwsChainCredentials::new(SharedCredentialsProvider::new(Counting {
            calls: 0.into(),
            lifetime: Duration::from_secs(3600),
        }));
        for _ in 0..3 {
            let c = creds.get_credential().await.unwrap();
            assert_eq!(c.key_id, "key-0");
            assert_eq!(c.token.as_deref(), Some("token"));
        }
        // Credentials about to expire are fetched on every use.
        let creds = AwsChainCredentials::new(SharedCredentialsProvider::new(Counting {
            calls: 0.into(),
            lifetime: Duration::from_secs(60),
        }));
        assert_eq!(creds.get_credential().await.unwrap().key_id, "key-0");
        assert_eq!(creds.get_credential().await.unwrap().key_id, "key-1");
        assert!(!format!("{creds:?}").contains("secret"));
    }
}
