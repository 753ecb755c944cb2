//! Reading a local object in one blocking task. Through object_store a local get takes
//! four trips to the blocking pool (open and stat the file, open the sidecar, read the
//! sidecar, read the file), each a task switch and a thread wake-up that cost more than
//! the read of a small file. Here one task opens and stats the file, reads its sidecar
//! and, up to [`super::FILE_CHUNK`], its bytes. The metadata is what object_store's
//! `LocalFileSystem` reports for the same file (its etag scheme, checked by a test), so
//! sidecars written through object_store keep matching.
//!
//! Only the plain case is taken here: a file that opens, is not a folder, and a range
//! that fits it. Anything else (missing, unreadable, bad range) returns `None`, and the
//! caller goes through object_store, whose errors it already maps.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::GetRange;
use object_store::path::Path;

/// A local object read in one go.
#[derive(Debug)]
pub(super) struct LocalRead {
    /// What object_store would report for the file.
    pub(super) meta: object_store::ObjectMeta,
    /// The sidecar's bytes, when it has one.
    pub(super) sidecar: Option<Vec<u8>>,
    /// The range of the file the body covers.
    pub(super) range: Range<u64>,
    /// The bytes already read, or the open file to read them from in pieces.
    pub(super) body: LocalBody,
}

/// A local read's body.
#[derive(Debug)]
pub(super) enum LocalBody {
    /// All of the range.
    Read(Bytes),
    /// Too large to read at once: the file and its path.
    File(File, PathBuf),
}

/// object_store's etag for a local file: inode, modification time in microseconds and
/// size, in hex.
fn etag(metadata: &std::fs::Metadata, modified: SystemTime) -> String {
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{micros:x}-{:x}\"", metadata.ino(), metadata.len())
}

/// Reads the object at `file` (its path under the store `location`) and its sidecar at
/// `sidecar`, blocking; `None` where object_store should answer instead.
pub(super) fn read(
    location: Path,
    file: PathBuf,
    sidecar: &std::path::Path,
    range: Option<&GetRange>,
    whole_up_to: u64,
) -> Option<LocalRead> {
    let handle = File::open(&file).ok()?;
    let metadata = handle.metadata().ok()?;
    if metadata.is_dir() {
        return None;
    }
    let modified = metadata.modified().ok()?;
    let size = metadata.len();
    let range = match range {
        Some(r) => r.as_range(size).ok()?,
        None => 0..size,
    };
    let meta = object_store::ObjectMeta {
        location,
        last_modified: DateTime::<Utc>::from(modified),
        size,
        e_tag: Some(etag(&metadata, modified)),
        version: None,
    };
    let sidecar = match std::fs::read(sidecar) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => return None,
    };
    let len = range.end - range.start;
    let body = if len <= whole_up_to {
        let mut buffer = vec![0u8; usize::try_from(len).ok()?];
        handle.read_exact_at(&mut buffer, range.start).ok()?;
        LocalBody::Read(Bytes::from(buffer))
    } else {
        LocalBody::File(handle, file)
    };
    Some(LocalRead {
        meta,
        sidecar,
        range,
        body,
    })
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    /// The metadata read here is object_store's, etag included: sidecars written with
    /// object_store's etag must keep matching.
    #[tokio::test]
    async fn reports_what_object_store_reports() {
        let dir = std::env::temp_dir().join(format!("zs-local-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = LocalFileSystem::new_with_prefix(&dir).unwrap();
        let location = Path::from("a/b.bin");
        let put = store
            .put(&location, PutPayload::from(vec![7u8; 3000]))
            .await
            .unwrap();
        let head = store.head(&location).await.unwrap();
        let file = store.path_to_filesystem(&location).unwrap();
        let side = dir.join("side.json");
        std::fs::write(&side, b"{}").unwrap();

        let read = read(location.clone(), file.clone(), &side, None, 1 << 20).unwrap();
        assert_eq!(read.meta, head);
        assert_eq!(read.meta.e_tag, put.e_tag);
        assert_eq!(read.sidecar.as_deref(), Some(&b"{}"[..]));
        assert!(matches!(read.body, LocalBody::Read(ref b) if b.len() == 3000));

        let range = GetRange::Bounded(10..20);
        let missing = dir.join("none.json");
        let part = super::read(
            location.clone(),
            file.clone(),
            &missing,
            Some(&range),
            1 << 20,
        )
        .unwrap();
        assert_eq!((part.range.clone(), part.sidecar.is_none()), (10..20, true));
        let big = super::read(location.clone(), file.clone(), &dir.join("x"), None, 100).unwrap();
        assert!(matches!(big.body, LocalBody::File(..)));

        // Not ours to answer: a range past the end, a folder, a missing file.
        let past = GetRange::Offset(5000);
        assert!(super::read(location.clone(), file, &dir.join("x"), Some(&past), 100).is_none());
        assert!(super::read(location.clone(), dir.join("a"), &dir.join("x"), None, 100).is_none());
        assert!(super::read(location, dir.join("gone"), &dir.join("x"), None, 100).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
