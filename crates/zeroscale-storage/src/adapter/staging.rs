//! A local folder's partly written files. object_store writes each local object to
//! `<file>#<n>` and renames it into place once complete; a process killed midway leaves
//! that staging file behind (listings skip it, but it fills the disk). A sweep removes the
//! ones older than its age. Our file names always end with `#f` ([`super::codec`]), so a
//! staging file is `…#f#<digits>` and no object is ever mistaken for one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Whether `name` is a staging file of one of our files.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(file, n)| {
        file.ends_with("#f") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn walk(dir: &Path, cutoff: SystemTime, removed: &mut usize) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), cutoff, removed)?;
        } else if kind.is_file()
            && entry.file_name().to_str().is_some_and(is_staging)
            && entry.metadata()?.modified()? < cutoff
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => *removed += 1,
                // Renamed into place or removed by another sweep meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes the staging files under `root` last written more than `older_than` ago;
/// returns how many.
pub(super) async fn sweep(root: PathBuf, older_than: Duration) -> std::io::Result<usize> {
    tokio::task::spawn_blocking(move || {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        walk(&root, cutoff, &mut removed).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("sweeping staging files under {}: {e}", root.display()),
            )
        })?;
        Ok(removed)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_staging_files_from_objects() {
        assert!(is_staging("report.pdf#f#1"));
        assert!(is_staging("a##f#f#12"));
        assert!(!is_staging("report.pdf#f"));
        assert!(!is_staging("a#f#x"));
        assert!(!is_staging("a#1"), "not one of our files");
        assert!(!is_staging("a#f#"));
    }

    #[tokio::test]
    async fn removes_only_old_staging_files() {
        let root = std::env::temp_dir().join(format!("zs-staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("files#p2f")).unwrap();
        std::fs::write(root.join("files#p2f/a#f"), b"object").unwrap();
        std::fs::write(root.join("files#p2f/a#f#1"), b"partial").unwrap();
        std::fs::write(root.join("b#f#3"), b"partial").unwrap();
        // Nothing is old enough yet.
        assert_eq!(
            sweep(root.clone(), Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(sweep(root.clone(), Duration::ZERO).await.unwrap(), 2);
        assert!(root.join("files#p2f/a#f").exists(), "objects stay");
        assert!(!root.join("b#f#3").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
