//! Listing in key order, one page at a time, without reading more than a page needs.
//!
//! Stores whose paths are the keys (memory, S3, Azure) list in key order themselves: a
//! page starts after the previous page's last key (`list_with_offset`) and stops reading
//! once it is full or past the prefix. Local files are walked here instead: object_store
//! walks a folder in directory order and cannot start in the middle, so every page would
//! read the whole tree. The walk visits each folder's entries in the order of the keys
//! they hold (a folder `a` sorts as `a/`, which is exactly where its keys fall among its
//! siblings), skips whole folders that lie before the page token or outside the prefix,
//! and stops when the page is full: a page costs its own size plus the folders on its path.

use std::path::{Path as FsPath, PathBuf};

use futures::{StreamExt, stream};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use zeroscale_core::storage::{ListOptions, ListPage, ObjectKey, ObjectMeta, RESERVED_PREFIX};
use zeroscale_core::{Error, Result};

use super::attributes::plain_meta;
use super::codec::{Codec, unescape_segment};
use super::{Layout, ObjectStoreStorage};

/// Default and largest listing page.
const DEFAULT_PAGE: usize = 1000;
/// `head` calls in flight while a local page is filled in.
const HEAD_CONCURRENCY: usize = 16;

impl ObjectStoreStorage {
    pub(super) async fn list_page(&self, opts: ListOptions) -> Result<ListPage> {
        let page_size = opts
            .page_size
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, DEFAULT_PAGE);
        let prefix = opts.prefix.unwrap_or_default();
        let after = opts.page_token;
        let mut objects = match &self.layout {
            Layout::LocalFiles { root } => {
                self.local_page(root.clone(), &prefix, after, page_size)
                    .await?
            }
            Layout::Keys => self.ordered_page(&prefix, after, page_size).await?,
        };
        let more = objects.len() > page_size;
        objects.truncate(page_size);
        let next_page_token = if more {
            objects.last().map(|m| m.key.as_str().to_owned())
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next_page_token,
        })
    }

    /// Up to `limit + 1` objects from a store that lists in key order.
    async fn ordered_page(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        // object_store lists by whole path segments: list the folder that holds the string
        // prefix and filter.
        let folder = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => Some(
                Path::parse(self.codec.encode_folder(dir))
                    .map_err(|e| Error::invalid_input(format!("list prefix `{prefix}`: {e}")))?,
            ),
            _ => None,
        };
        let mut listing = match &after {
            Some(after) => {
                let offset =
                    Path::parse(after).map_err(|_| Error::invalid_input("invalid page token"))?;
                self.store.list_with_offset(folder.as_ref(), &offset)
            }
            None => self.store.list(folder.as_ref()),
        };
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| super::errors::map_store_err(self.backend, e))?;
            let Some(key) = self.key_of(&meta.location) else {
                continue;
            };
            let name = key.as_str();
            if after.as_deref().is_some_and(|t| name <= t) {
                continue;
            }
            if !name.starts_with(prefix) {
                if name > prefix {
                    // Keys come in order: nothing after this one has the prefix.
                    break;
                }
                continue;
            }
            objects.push(plain_meta(key, &meta));
            if objects.len() > limit {
                break;
            }
        }
        Ok(objects)
    }

    /// Up to `limit + 1` objects from a local folder, walked in key order.
    async fn local_page(
        &self,
        root: PathBuf,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let walk_prefix = prefix.to_owned();
        let keys = tokio::task::spawn_blocking(move || {
            let mut walk = Walk {
                prefix: &walk_prefix,
                after: after.as_deref(),
                limit: limit + 1,
                found: Vec::new(),
            };
            // Start in the folder that holds the prefix.
            let (dir, key_prefix) = match walk_prefix.rsplit_once('/') {
                Some((dir, _)) if !dir.is_empty() => (
                    root.join(Codec::Local.encode_folder(dir)),
                    format!("{dir}/"),
                ),
                _ => (root, String::new()),
            };
            walk.folder(&dir, &key_prefix).map(|_| walk.found)
        })
        .await
        .map_err(|e| Error::backend(self.backend.to_owned(), e))?
        .map_err(|e| {
            Error::backend(
                self.backend.to_owned(),
                std::io::Error::new(e.kind(), format!("listing {}: {e}", self.location)),
            )
        })?;
        // Sizes and etags from object_store, so they match `head` and `get`.
        let metas: Vec<Result<Option<ObjectMeta>>> = stream::iter(keys)
            .map(|key| async move {
                match self.store.head(&self.path(&key)?).await {
                    Ok(meta) => Ok(Some(plain_meta(key, &meta))),
                    // Deleted since the walk saw it.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.map_err(&key, e)),
                }
            })
            .buffered(HEAD_CONCURRENCY)
            .collect()
            .await;
        metas
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>>>()
    }
}

/// A key-ordered walk of a local storage folder.
struct Walk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    found: Vec<ObjectKey>,
}

/// What a folder entry stands for.
enum Entry {
    /// A folder holding keys that start with this (ends with `/`).
    Folder(String, PathBuf),
    /// The object with this key.
    Object(String),
}

impl Entry {
    fn sort_key(&self) -> &str {
        match self {
            Entry::Folder(k, _) | Entry::Object(k) => k,
        }
    }
}

impl Walk<'_> {
    /// Walks `dir`, whose keys start with `key_prefix`; `Ok(true)` when the walk is over
    /// (page full, or past the prefix).
    fn folder(&mut self, dir: &FsPath, key_prefix: &str) -> std::io::Result<bool> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if entry.file_type()?.is_dir() {
                let Some(decoded) = unescape_segment(&name) else {
                    continue;
                };
                let key = format!("{key_prefix}{decoded}/");
                if key != RESERVED_PREFIX {
                    children.push(Entry::Folder(key, entry.path()));
                }
            } else if let Some(decoded) = name.strip_suffix("#f").and_then(unescape_segment) {
                // Anything else (object_store's staging files) is not an object.
                children.push(Entry::Object(format!("{key_prefix}{decoded}")));
            }
        }
        children.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
        for child in children {
            let key = child.sort_key();
            let holds_prefix = key.starts_with(self.prefix)
                || matches!(child, Entry::Folder(..)) && self.prefix.starts_with(key);
            if !holds_prefix {
                if key > self.prefix {
                    return Ok(true);
                }
                continue;
            }
            match child {
                Entry::Object(key) => {
                    if self.after.is_some_and(|t| key.as_str() <= t) {
                        continue;
                    }
                    if let Ok(key) = ObjectKey::parse(key) {
                        self.found.push(key);
                        if self.found.len() >= self.limit {
                            return Ok(true);
                        }
                    }
                }
                Entry::Folder(key, path) => {
                    // Every key inside is at or before the token: skip the whole folder.
                    if self
                        .after
                        .is_some_and(|t| t > key.as_str() && !t.starts_with(key.as_str()))
                    {
                        continue;
                    }
                    if self.folder(&path, &key)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &FsPath, keys: &[&str]) {
        for key in keys {
            let path = root.join(Codec::Local.encode(key));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
    }

    fn walk(root: &FsPath, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        let mut walk = Walk {
            prefix,
            after,
            limit,
            found: Vec::new(),
        };
        walk.folder(root, "").unwrap();
        walk.found.into_iter().map(ObjectKey::into_string).collect()
    }

    #[test]
    fn walks_in_key_order_and_resumes_after_the_token() {
        let root = std::env::temp_dir().join(format!("zs-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut keys = vec!["a", "a/b", "a/b/c", "a#x", "ab", "a-", "b", "a/c", "%", "#"];
        store(&root, &keys);
        std::fs::create_dir_all(root.join(".zeroscale/meta")).unwrap();
        std::fs::write(root.join("tmp#f#1"), b"staging").unwrap();
        keys.sort_unstable();
        assert_eq!(walk(&root, "", None, 100), keys);
        // Every page resumes where the last ended.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = walk(&root, "", after.as_deref(), 3);
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, keys);
        assert_eq!(walk(&root, "a/", None, 100), ["a/b", "a/b/c", "a/c"]);
        assert_eq!(walk(&root, "a", Some("a/b/c"), 100), ["a/c", "ab"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
