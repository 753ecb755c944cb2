//! App-served signed URLs for storage that cannot presign (memory, local files):
//! `<base>/files/<token>`, where the token is the method, the expiry and the object key
//! encrypted and authenticated with XChaCha20-Poly1305 under a key derived from the
//! storage signing secret (from config, or kept in the data dir). Without the secret a
//! token cannot be read (it does not show the key, so not the owner's id) nor made or
//! changed.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroscale_core::storage::{ObjectKey, SignedMethod};
use zeroscale_core::{Error, Result};

/// The secret's file in the data dir when config sets none.
pub const SECRET_FILE: &str = "storage-signing.key";

/// Bound into every token, so a token made for another purpose with the same secret is
/// refused.
const CONTEXT: &[u8] = b"zeroscale signed file URL v1";
const NONCE_BYTES: usize = 24;

/// Signs and verifies app-served URLs.
pub struct UrlSigner {
    cipher: XChaCha20Poly1305,
    base_url: String,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104), used to derive the token key from the signing secret.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn denied(message: &str) -> Error {
    Error::permission_denied(message.to_owned())
}

impl UrlSigner {
    /// A signer for URLs under `base_url` (e.g. `http://127.0.0.1:8080`), with the
    /// storage signing `secret`.
    pub fn new(secret: &[u8], base_url: impl Into<String>) -> Self {
        let key = hmac_sha256(secret, CONTEXT);
        UrlSigner {
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The token allowing `method` on `key` until `expires` (unix seconds).
    pub fn token(&self, method: SignedMethod, key: &ObjectKey, expires: i64) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        if getrandom::fill(&mut nonce).is_err() {
            // No OS randomness: a nonce from the clock and the key still never repeats
            // for one (key, method, expiry) in practice; tokens stay authenticated.
            let seed = format!(
                "{:?}{}{expires}",
                std::time::SystemTime::now(),
                key.as_str()
            );
            nonce.copy_from_slice(&Sha256::digest(seed.as_bytes())[..NONCE_BYTES]);
        }
        let plaintext = format!("{}\n{expires}\n{}", method.as_str(), key.as_str());
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: CONTEXT,
                },
            )
            .expect("encrypting a short message cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The URL allowing `method` on `key` until `expires` (unix seconds).
    pub fn sign(&self, method: SignedMethod, key: &ObjectKey, expires: i64) -> String {
        format!(
            "{}/files/{}",
            self.base_url,
            self.token(method, key, expires)
        )
    }

    /// The object key a token allows `method` on, if it was made with this secret, is
    /// for `method` and has not expired at `now`; else [`Error::PermissionDenied`] says
    /// which.
    pub fn open(&self, method: SignedMethod, token: &str, now: i64) -> Result<ObjectKey> {
        let forged = || denied("the URL's token is not valid: ask the API for a signed URL");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| forged())?;
        if bytes.len() <= NONCE_BYTES {
            return Err(forged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| forged())?;
        let plaintext = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: CONTEXT,
                },
            )
            .map_err(|_| forged())?;
        let text = String::from_utf8(plaintext).map_err(|_| forged())?;
        let mut parts = text.splitn(3, '\n');
        let (Some(allowed), Some(expires), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(forged());
        };
        let expires: i64 = expires.parse().map_err(|_| forged())?;
        if allowed != method.as_str() {
            return Err(Error::permission_denied(format!(
                "this URL allows {allowed}, not {}",
                method.as_str()
            )));
        }
        if now >= expires {
            return Err(denied("the signed URL has expired"));
        }
        ObjectKey::parse(key)
    }
}

/// The signing secret: `configured` if set, else the one kept in `<data_dir>/storage-signing.key`,
/// created (32 random bytes, mode 0600) the first time.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> Result<Vec<u8>> {
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        return Ok(secret.as_bytes().to_vec());
    }
    let file = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => return Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::config(
                "storage.signing_secret",
                format!("cannot read {}: {e}", file.display()),
            ));
        }
    }
    zeroscale_core::config::ensure_private_dir(data_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::unavailable(format!("the OS random generator failed: {e}")))?;
    let secret = zeroscale_core::hex(&bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&file) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(secret.as_bytes()).map_err(|e| {
                Error::config(
                    "storage.signing_secret",
                    format!("cannot write {}: {e}", file.display()),
                )
            })?;
            Ok(secret.into_bytes())
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_secret(None, data_dir)
        }
        Err(e) => Err(Error::config(
            "storage.signing_secret",
            format!("cannot create {}: {e}", file.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            zeroscale_core::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_hide_the_key_and_cannot_be_changed() {
        let s = UrlSigner::new(b"secret", "http://127.0.0.1:1/");
        let key = ObjectKey::parse("files/0190aaaa-owner/ü.txt").unwrap();
        let url = s.sign(SignedMethod::Get, &key, 2_000);
        let token = url.strip_prefix("http://127.0.0.1:1/files/").unwrap();
        assert!(
            !url.contains("owner") && !url.contains("files/files"),
            "{url}"
        );
        // Nothing of the key shows in any decoding of the token.
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("owner"));
        assert_eq!(s.open(SignedMethod::Get, token, 1_999).unwrap(), key);
        // Two tokens for the same thing differ (random nonce).
        assert_ne!(s.token(SignedMethod::Get, &key, 2_000), token);
        let err = s.open(SignedMethod::Get, token, 2_000).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = s.open(SignedMethod::Put, token, 1).unwrap_err();
        assert!(err.to_string().contains("allows GET, not PUT"), "{err}");
        // Another secret, or one flipped bit, and it is refused.
        let other = UrlSigner::new(b"other", "http://x");
        assert!(other.open(SignedMethod::Get, token, 1).is_err());
        let mut tampered = raw;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(tampered);
        assert!(s.open(SignedMethod::Get, &tampered, 1).is_err());
        assert!(s.open(SignedMethod::Get, "not-base64!", 1).is_err());
        assert!(s.open(SignedMethod::Get, "", 1).is_err());
    }

    #[test]
    fn secret_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("zs-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_secret(None, &dir).unwrap();
        let b = load_or_create_secret(None, &dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            load_or_create_secret(Some("configured"), &dir).unwrap(),
            b"configured"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
