//! How users' files are answered so that our origin never renders them as active content:
//! which content types may be shown inline, the `Content-Disposition` for the rest, and
//! the headers every download carries.
//!
//! A user may upload `x.html` with `Content-Type: text/html`. Served inline from the API's
//! origin, its script would run with that origin's cookies and storage. So every download
//! carries `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox;
//! default-src 'none'` ([`DOWNLOAD_CSP`]), and every type not on a small allowlist
//! (raster images, PDF, plain text; configurable) is an attachment. HTML, SVG, XML and
//! JavaScript are attachments whatever the allowlist says.

/// The CSP of every download: no scripts, no plugins, no same-origin access, nothing
/// loaded, not framable.
pub const DOWNLOAD_CSP: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

/// Types shown inline by default.
pub const DEFAULT_INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "application/pdf",
    "text/plain",
];

/// Types that are always attachments: they can run script or style a page.
fn always_attachment(essence: &str) -> bool {
    essence.contains("html")
        || essence.contains("xml")
        || essence.contains("javascript")
        || essence.contains("ecmascript")
        || essence.ends_with("+xml")
        || essence == "image/svg+xml"
        || essence == "text/css"
        || essence == "application/wasm"
}

/// Which downloads may be shown inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPolicy {
    inline_types: Vec<String>,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy::new(DEFAULT_INLINE_TYPES.iter().map(|s| (*s).to_owned()))
    }
}

/// The media type without parameters, lower-case: `Text/HTML; charset=utf-8` → `text/html`.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

impl DownloadPolicy {
    /// A policy that shows `inline_types` inline (media types without parameters; HTML,
    /// SVG, XML and JavaScript never are).
    pub fn new(inline_types: impl IntoIterator<Item = String>) -> Self {
        DownloadPolicy {
            inline_types: inline_types.into_iter().map(|t| essence(&t)).collect(),
        }
    }

    /// Whether a file of `content_type` may be shown inline.
    pub fn is_inline(&self, content_type: Option<&str>) -> bool {
        let Some(content_type) = content_type else {
            return false;
        };
        let essence = essence(content_type);
        !always_attachment(&essence) && self.inline_types.contains(&essence)
    }

    /// The `Content-Disposition` for a file of `content_type` named `filename`:
    /// `inline` or `attachment`, with `filename*=UTF-8''…` (and a plain ASCII `filename`
    /// for old clients) when there is a name.
    pub fn disposition(&self, content_type: Option<&str>, filename: Option<&str>) -> String {
        let kind = if self.is_inline(content_type) {
            "inline"
        } else {
            "attachment"
        };
        match filename.filter(|f| !f.is_empty()) {
            Some(name) => format!(
                "{kind}; filename=\"{}\"; filename*=UTF-8''{}",
                ascii_fallback(name),
                percent_encode(name)
            ),
            None => kind.to_owned(),
        }
    }

    /// The disposition to answer with, given the one stored at upload: a stored
    /// `attachment` is kept (with its file name); anything else is kept only when the
    /// type may be inline, else it becomes `attachment`.
    pub fn enforce(&self, content_type: Option<&str>, stored: Option<&str>) -> String {
        let stored = stored.map(str::trim).filter(|s| !s.is_empty());
        match stored {
            Some(s) if s.to_ascii_lowercase().starts_with("attachment") => s.to_owned(),
            Some(s) if self.is_inline(content_type) => s.to_owned(),
            Some(s) => match s.split_once(';') {
                Some((_, params)) => format!("attachment;{params}"),
                None => "attachment".to_owned(),
            },
            None => self.disposition(content_type, None),
        }
    }
}

/// RFC 5987 `attr-char`s kept, everything else `%XX` (UTF-8 bytes).
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name with non-ASCII, quotes, backslashes and control characters replaced by `_`.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_content_is_always_an_attachment() {
        let everything = DownloadPolicy::new(
            [
                "text/html",
                "image/svg+xml",
                "text/javascript",
                "application/xml",
            ]
            .map(str::to_owned),
        );
        for t in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "image/svg+xml",
            "text/javascript",
            "application/javascript",
            "application/xml",
            "text/xml",
            "application/xhtml+xml",
        ] {
            assert!(!everything.is_inline(Some(t)), "{t}");
            assert!(DownloadPolicy::default().disposition(Some(t), None) == "attachment");
        }
    }

    #[test]
    fn the_allowlist_is_inline() {
        let p = DownloadPolicy::default();
        assert!(p.is_inline(Some("image/png")));
        assert!(p.is_inline(Some("text/plain; charset=utf-8")));
        assert!(p.is_inline(Some("application/pdf")));
        assert!(!p.is_inline(Some("application/octet-stream")));
        assert!(!p.is_inline(None));
    }

    #[test]
    fn file_names_are_encoded() {
        let p = DownloadPolicy::default();
        assert_eq!(
            p.disposition(Some("text/html"), Some("x \"y\".html")),
            "attachment; filename=\"x _y_.html\"; filename*=UTF-8''x%20%22y%22.html"
        );
        assert_eq!(
            p.disposition(Some("image/png"), Some("café.png")),
            "inline; filename=\"caf_.png\"; filename*=UTF-8''caf%C3%A9.png"
        );
    }

    #[test]
    fn enforce_never_makes_active_content_inline() {
        let p = DownloadPolicy::default();
        assert_eq!(
            p.enforce(Some("text/html"), Some("inline; filename=\"a.html\"")),
            "attachment; filename=\"a.html\""
        );
        assert_eq!(p.enforce(Some("text/html"), None), "attachment");
        assert_eq!(
            p.enforce(Some("image/png"), Some("inline; filename=\"a.png\"")),
            "inline; filename=\"a.png\""
        );
        assert_eq!(
            p.enforce(Some("image/png"), Some("attachment")),
            "attachment"
        );
    }
}
