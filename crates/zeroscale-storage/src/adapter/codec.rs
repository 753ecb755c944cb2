//! How object keys map to object_store paths: unchanged on memory and S3; on local disks
//! the escaping below, so files and folders never clash.
//!
//! Local files also cannot hold both a file `a` and a folder `a/` (keys `a` and `a/b`), and
//! object_store reserves file names ending in `#<digits>`; so on local disks every key is
//! encoded ([`Codec::Local`]): in each segment `#` becomes `##` and `%` becomes `#p`, and
//! `#f` ends each file name. Read as escape pairs, a folder name never holds `#f` and a
//! file name always ends with it: they never clash, and any valid key can be stored.

use object_store::path::Path;

/// How keys map to object_store paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// The key is the path (memory, S3).
    Raw,
    /// The local-disk encoding described in the module docs.
    Local,
}

/// `#` → `##`, `%` → `#p` (so no `%` reaches the disk, where it could be read back as an
/// escape).
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '#' => out.push_str("##"),
            '%' => out.push_str("#p"),
            other => out.push(other),
        }
    }
    out
}

/// Undoes [`escape_segment`]; `None` for any other use of `#` (not one of ours).
pub(super) fn unescape_segment(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == '#' {
            match chars.next() {
                Some('#') => out.push('#'),
                Some('p') => out.push('%'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Codec {
    /// The object_store path string for a key-like string.
    pub(super) fn encode(self, key: &str) -> String {
        match self {
            Codec::Raw => key.to_owned(),
            Codec::Local => {
                let segments: Vec<String> = key.split('/').map(escape_segment).collect();
                format!("{}#f", segments.join("/"))
            }
        }
    }

    /// The folder path string for a folder-like prefix (`a/b`).
    pub(super) fn encode_folder(self, folder: &str) -> String {
        match self {
            Codec::Raw => folder.to_owned(),
            Codec::Local => folder
                .split('/')
                .map(escape_segment)
                .collect::<Vec<_>>()
                .join("/"),
        }
    }

    /// The key a listed path stands for; `None` for files that are not objects.
    pub(super) fn decode(self, path: &Path) -> Option<String> {
        match self {
            Codec::Raw => Some(path.as_ref().to_owned()),
            Codec::Local => {
                let parts: Vec<String> = path
                    .parts()
                    .map(|p| percent_decode(p.as_ref()))
                    .collect::<Option<_>>()?;
                let (last, dirs) = parts.split_last()?;
                let mut segments = dirs
                    .iter()
                    .map(|d| unescape_segment(d))
                    .collect::<Option<Vec<_>>>()?;
                let name = last.strip_suffix("#f")?;
                segments.push(unescape_segment(name)?);
                Some(segments.join("/"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_codec_separates_files_from_folders() {
        let c = Codec::Local;
        assert_eq!(c.encode("a"), "a#f");
        assert_eq!(c.encode("a/b"), "a/b#f");
        assert_eq!(c.encode("x#1"), "x##1#f");
        assert_eq!(c.encode("50%/off"), "50#p/off#f");
        assert_eq!(c.encode_folder("a#f"), "a##f");
        assert_ne!(c.encode("a#"), c.encode_folder("a#f"));
        for key in [
            "a",
            "a/b",
            "x#1",
            "a##b/c#",
            "ü/🙂 x#f",
            "#",
            "percent%20sign",
            "%23",
        ] {
            let path = Path::parse(c.encode(key)).unwrap();
            assert_eq!(c.decode(&path).as_deref(), Some(key), "{key}");
        }
        assert_eq!(c.decode(&Path::parse("tmp#1").unwrap()), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%23b%25").as_deref(), Some("a#b%"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
