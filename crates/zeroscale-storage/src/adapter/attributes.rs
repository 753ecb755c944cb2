//! Content type, content disposition and user metadata: object_store attributes where the
//! backend stores them (memory, S3, Azure); on local files a JSON sidecar under the reserved
//! `.zeroscale/meta/` prefix, tagged with the object's etag and size so a stale sidecar
//! (from a crash between the two writes, or an overwrite without attributes) is ignored
//! rather than misreported.

use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use zeroscale_core::storage::{ObjectKey, ObjectMeta, PutOptions, RESERVED_PREFIX};
use zeroscale_core::{Error, Result};

use super::ObjectStoreStorage;

/// Where a backend keeps attributes.
#[cfg_attr(
    not(feature = "local"),
    allow(
        dead_code,
        reason = "only local storage walks files and keeps sidecars"
    )
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttributeStore {
    /// In the object store itself.
    Native,
    /// In a sidecar object next to it (local files).
    Sidecar,
}

/// What the sidecar keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sidecar {
    etag: Option<String>,
    size: u64,
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_disposition: Option<String>,
    metadata: std::collections::BTreeMap<String, String>,
}

impl ObjectStoreStorage {
    pub(super) fn sidecar_path(&self, key: &ObjectKey) -> Result<Path> {
        Path::parse(
            self.codec
                .encode(&format!("{RESERVED_PREFIX}meta/{}.json", key.as_str())),
        )
        .map_err(|e| Error::invalid_input(format!("object key `{key}` is not storable: {e}")))
    }

    /// The attributes to store with an object (none when they go to a sidecar).
    pub(super) fn attributes(&self, opts: &PutOptions) -> Attributes {
        let mut attributes = Attributes::new();
        if self.attribute_store == AttributeStore::Sidecar {
            return attributes;
        }
        if let Some(ct) = &opts.content_type {
            attributes.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
        }
        if let Some(cd) = &opts.content_disposition {
            attributes.insert(
                Attribute::ContentDisposition,
                AttributeValue::from(cd.clone()),
            );
        }
        for (k, v) in &opts.metadata {
            attributes.insert(
                Attribute::Metadata(k.clone().into()),
                AttributeValue::from(v.clone()),
            );
        }
        attributes
    }

    /// Writes (or, with nothing to keep, removes) the sidecar of the object just written.
    pub(super) async fn write_sidecar(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
        etag: Option<String>,
        size: u64,
    ) -> Result<()> {
        if self.attribute_store == AttributeStore::Native {
            return Ok(());
        }
        let side = self.sidecar_path(key)?;
        if opts.content_type.is_none()
            && opts.content_disposition.is_none()
            && opts.metadata.is_empty()
        {
            // Nothing to keep. A sidecar left by an earlier version of the object names
            // that version's etag and size, so it is ignored (and removed with the
            // object): no need to pay a delete on every plain put.
            return Ok(());
        }
        let body = serde_json::to_vec(&Sidecar {
            etag,
            size,
            content_type: opts.content_type.clone(),
            content_disposition: opts.content_disposition.clone(),
            metadata: opts.metadata.clone(),
        })
        .map_err(|e| Error::backend(self.backend, e))?;
        self.store
            .put(&side, PutPayload::from(body))
            .await
            .map_err(|e| self.map_err(key, e))?;
        Ok(())
    }

    /// Removes the sidecar of a deleted object.
    pub(super) async fn delete_sidecar(&self, key: &ObjectKey) -> Result<()> {
        if self.attribute_store == AttributeStore::Native {
            return Ok(());
        }
        self.delete_path(key, &self.sidecar_path(key)?).await
    }

    async fn delete_path(&self, key: &ObjectKey, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(key, e)),
        }
    }

    async fn read_sidecar(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
    ) -> Result<Option<Sidecar>> {
        let side = self.sidecar_path(key)?;
        let body = match self.store.get(&side).await {
            Ok(r) => r.bytes().await.map_err(|e| self.map_err(key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.map_err(key, e)),
        };
        Ok(parse_sidecar(&body, meta))
    }

    /// Core's metadata for a local object whose sidecar's bytes (if any) were read
    /// already.
    #[cfg(feature = "local")]
    pub(super) fn sidecar_meta(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
        sidecar: Option<&[u8]>,
    ) -> ObjectMeta {
        let mut out = plain_meta(key.clone(), meta);
        if let Some(side) = sidecar.and_then(|body| parse_sidecar(body, meta)) {
            out.content_type = side.content_type;
            out.content_disposition = side.content_disposition;
            out.metadata = side.metadata;
        }
        out
    }

    /// Core's metadata for an object, with its attributes from wherever they are kept.
    pub(super) async fn to_meta(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
        attributes: &Attributes,
    ) -> Result<ObjectMeta> {
        let mut out = plain_meta(key.clone(), meta);
        match self.attribute_store {
            AttributeStore::Native => {
                for (attribute, value) in attributes {
                    match attribute {
                        Attribute::ContentType => {
                            out.content_type = Some(value.as_ref().to_owned());
                        }
                        Attribute::ContentDisposition => {
                            out.content_disposition = Some(value.as_ref().to_owned());
                        }
                        Attribute::Metadata(name) => {
                            out.metadata
                                .insert(name.to_string(), value.as_ref().to_owned());
                        }
                        _ => {}
                    }
                }
            }
            AttributeStore::Sidecar => {
                if let Some(side) = self.read_sidecar(key, meta).await? {
                    out.content_type = side.content_type;
                    out.content_disposition = side.content_disposition;
                    out.metadata = side.metadata;
                }
            }
        }
        Ok(out)
    }
}

/// A sidecar's contents, unless unreadable or written for another version of the
/// object (stale).
fn parse_sidecar(body: &[u8], meta: &object_store::ObjectMeta) -> Option<Sidecar> {
    let sidecar = serde_json::from_slice::<Sidecar>(body).ok()?;
    (sidecar.etag == meta.e_tag && sidecar.size == meta.size).then_some(sidecar)
}

/// Metadata without attributes (what listings return).
pub(super) fn plain_meta(key: ObjectKey, meta: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.size,
        etag: meta.e_tag.clone(),
        last_modified: meta.last_modified,
        content_type: None,
        content_disposition: None,
        metadata: Default::default(),
    }
}
