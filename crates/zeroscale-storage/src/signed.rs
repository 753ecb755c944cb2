//! App-served signed URLs for storage that cannot presign (memory, local files):
//! `<base>/files/<key>?method=GET&expires=<unix seconds>&sig=<hex HMAC-SHA256>`, the MAC
//! taken over method, key and expiry with a secret from config or kept in the data dir.

use std::path::Path;

use sha2::{Digest, Sha256};
use zeroscale_core::storage::{ObjectKey, SignedMethod};
use zeroscale_core::{Error, Result};

/// The secret's file in the data dir when config sets none.
pub const SECRET_FILE: &str = "storage-signing.key";

/// Signs and verifies app-served URLs.
pub struct UrlSigner {
    secret: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Percent-encodes a key for a URL path, keeping `/` and RFC 3986's unreserved characters.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl UrlSigner {
    /// A signer for URLs under `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(secret: Vec<u8>, base_url: impl Into<String>) -> Self {
        UrlSigner {
            secret,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    fn mac(&self, method: SignedMethod, key: &str, expires: i64) -> String {
        let message = format!("{}\n{key}\n{expires}", method.as_str());
        zeroscale_core::hex(&hmac_sha256(&self.secret, message.as_bytes()))
    }

    /// The URL allowing `method` on `key` until `expires` (unix seconds).
    pub fn sign(&self, method: SignedMethod, key: &ObjectKey, expires: i64) -> String {
        format!(
            "{}/files/{}?method={}&expires={expires}&sig={}",
            self.base_url,
            encode_key(key.as_str()),
            method.as_str(),
            self.mac(method, key.as_str(), expires)
        )
    }

    /// Checks a request's signature and expiry; [`Error::PermissionDenied`] says which
    /// failed.
    pub fn verify(
        &self,
        method: SignedMethod,
        key: &str,
        expires: i64,
        sig: &str,
        now: i64,
    ) -> Result<()> {
        let want = self.mac(method, key, expires);
        let same = want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Error::permission_denied(
                "the URL's signature does not match its method, key and expiry",
            ));
        }
        if now >= expires {
            return Err(Error::permission_denied("the signed URL has expired"));
        }
        Ok(())
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
    fn sign_and_verify() {
        let s = UrlSigner::new(b"secret".to_vec(), "http://127.0.0.1:1/");
        let key = ObjectKey::parse("a b/ü.txt").unwrap();
        let url = s.sign(SignedMethod::Get, &key, 2_000);
        assert!(
            url.starts_with(
                "http://127.0.0.1:1/files/a%20b/%C3%BC.txt?method=GET&expires=2000&sig="
            ),
            "{url}"
        );
        let sig = url.rsplit_once("sig=").unwrap().1;
        s.verify(SignedMethod::Get, "a b/ü.txt", 2_000, sig, 1_999)
            .unwrap();
        assert!(
            s.verify(SignedMethod::Get, "a b/ü.txt", 2_000, sig, 2_000)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        assert!(
            s.verify(SignedMethod::Put, "a b/ü.txt", 2_000, sig, 1)
                .is_err()
        );
        assert!(
            s.verify(SignedMethod::Get, "a b/u.txt", 2_000, sig, 1)
                .is_err()
        );
        assert!(
            s.verify(SignedMethod::Get, "a b/ü.txt", 2_001, sig, 1)
                .is_err()
        );
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
