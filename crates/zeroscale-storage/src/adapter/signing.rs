//! How signed URLs are made: presigned by the backend (S3, R2) or app-served tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use zeroscale_core::storage::{ObjectKey, SignedUrl, SignedUrlOptions, UrlSigning};
use zeroscale_core::{Error, Result};

use crate::signed::UrlSigner;

/// The longest a signed URL may live (S3's limit for presigned URLs).
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How signed URLs are made.
#[derive(Clone)]
pub(crate) enum Signing {
    /// The backend presigns (S3, R2); `prefix` is prepended to keys.
    #[cfg(feature = "s3")]
    Native {
        /// The presigner.
        signer: Arc<dyn object_store::signer::Signer>,
        /// The bucket prefix keys live under.
        prefix: Option<String>,
    },
    /// URLs to the app's `/files/…` route.
    App(Arc<UrlSigner>),
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "s3")]
            Signing::Native { prefix, .. } => {
                f.debug_struct("Native").field("prefix", prefix).finish()
            }
            Signing::App(_) => f.write_str("App"),
        }
    }
}

impl Signing {
    /// Who answers the URLs.
    pub(crate) fn kind(&self) -> UrlSigning {
        match self {
            #[cfg(feature = "s3")]
            Signing::Native { .. } => UrlSigning::Backend,
            Signing::App(_) => UrlSigning::App,
        }
    }

    /// A URL allowing `opts.method` on `key` until it expires (1 second to 7 days).
    pub(crate) async fn sign(
        &self,
        backend: &str,
        key: &ObjectKey,
        opts: SignedUrlOptions,
    ) -> Result<SignedUrl> {
        if opts.expires_in.is_zero() || opts.expires_in > MAX_EXPIRY {
            return Err(Error::invalid_input(
                "signed URL expiry must be between 1 second and 7 days",
            ));
        }
        let expires_at = Utc::now()
            + chrono::Duration::from_std(opts.expires_in)
                .map_err(|_| Error::invalid_input("expiry too long"))?;
        let url = match self {
            #[cfg(feature = "s3")]
            Signing::Native { signer, prefix } => {
                let full = match prefix.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) => format!("{}/{}", p.trim_end_matches('/'), key.as_str()),
                    None => key.as_str().to_owned(),
                };
                let method = match opts.method {
                    zeroscale_core::storage::SignedMethod::Get => http::Method::GET,
                    zeroscale_core::storage::SignedMethod::Put => http::Method::PUT,
                };
                let p = object_store::path::Path::parse(&full)
                    .map_err(|e| Error::invalid_input(format!("object key `{key}`: {e}")))?;
                signer
                    .signed_url(method, &p, opts.expires_in)
                    .await
                    .map_err(|e| super::errors::map_os_err(backend, key, e))?
                    .to_string()
            }
            Signing::App(signer) => {
                let _ = backend;
                signer.sign(opts.method, key, expires_at.timestamp())
            }
        };
        Ok(SignedUrl {
            url,
            method: opts.method,
            expires_at,
        })
    }
}
