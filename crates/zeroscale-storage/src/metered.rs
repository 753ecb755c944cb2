//! [`Metered`]: any [`Storage`] with each operation counted and timed (names from
//! [`zeroscale_core::metrics`]); [`connect`](crate::connect) returns every backend
//! wrapped in it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use zeroscale_core::metrics as m;
use zeroscale_core::storage::{
    ByteStream, GetOptions, GetResult, ListOptions, ListPage, ObjectMeta, PutOptions, PutResult,
    SignedUrl, SignedUrlOptions, UrlSigning,
};
use zeroscale_core::uploads::SweepReport;
use zeroscale_core::{ObjectKey, Result, Storage};

/// A storage backend whose operations are recorded as metrics.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Storage>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Metered { inner }
    }
}

/// Records one operation `op` that took `took` and ended in `result`.
fn record<T>(op: &'static str, took: Duration, result: &Result<T>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind().code(),
    };
    metrics::counter!(m::STORAGE_OPS, "op" => op, "outcome" => outcome).increment(1);
    metrics::histogram!(m::STORAGE_DURATION, "op" => op).record(took.as_secs_f64());
}

fn bytes(direction: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(m::STORAGE_BYTES, "direction" => direction).increment(n);
    }
}

async fn timed<T>(op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "storage",
        otel.name = %format_args!("storage {op}"),
        otel.kind = "client",
        op,
        outcome = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    span.record(
        "outcome",
        match &result {
            Ok(_) => "ok",
            Err(e) => e.kind().code(),
        },
    );
    record(op, started.elapsed(), &result);
    result
}

#[async_trait]
impl Storage for Metered {
    fn backend(&self) -> &str {
        self.inner.backend()
    }

    fn location(&self) -> &str {
        self.inner.location()
    }

    fn url_signing(&self) -> UrlSigning {
        self.inner.url_signing()
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let len = payload.len() as u64;
        let result = timed("put", self.inner.put_opts(key, payload, opts)).await;
        if result.is_ok() {
            bytes("in", len);
        }
        result
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = timed("put", self.inner.put_stream(key, body, opts)).await;
        if let Ok(put) = &result {
            bytes("in", put.size);
        }
        result
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let result = timed("get", self.inner.get_opts(key, opts)).await;
        if let Ok(get) = &result {
            bytes("out", get.range.end.saturating_sub(get.range.start));
        }
        result
    }

    async fn get_bytes_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<Bytes> {
        let result = timed("get", self.inner.get_bytes_opts(key, opts)).await;
        if let Ok(body) = &result {
            bytes("out", body.len() as u64);
        }
        result
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        timed("head", self.inner.head(key)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        timed("delete", self.inner.delete(key)).await
    }

    async fn list(&self, opts: ListOptions) -> Result<ListPage> {
        timed("list", self.inner.list(opts)).await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        timed("copy", self.inner.copy(from, to)).await
    }

    async fn signed_url(&self, key: &ObjectKey, opts: SignedUrlOptions) -> Result<SignedUrl> {
        timed("sign", self.inner.signed_url(key, opts)).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn sweep(&self, older_than: Duration) -> Result<SweepReport> {
        self.inner.sweep(older_than).await
    }
}
