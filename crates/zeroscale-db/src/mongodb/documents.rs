//! Documents on MongoDB: stored like every other row, searched exactly by streaming the
//! collection's vectors through a top-k heap (memory bounded by k, not by the
//! collection), with the same arithmetic as the SQL engines' exact search, so the same
//! documents give the same hits in the same order. Atlas `$vectorSearch` is not used.

use futures::TryStreamExt;
use mongodb::bson::doc;
use serde_json::{Map, Value};
use zeroscale_core::{Error, Result};

use super::Mongo;
use super::rows::Row;
use crate::domain::decode_vector;
use crate::domain::entity::documents;
use crate::domain::vector_index::{Scored, TopK, cosine_of, dot, norm};

/// Stores `models` all or none: in one transaction when the server has them; otherwise
/// one ordered batch, and what a failed batch wrote is deleted again.
pub(crate) async fn insert_all(m: &Mongo, models: &[documents::Model]) -> Result<()> {
    if m.transactions() {
        return m
            .retry_transient(|| async {
                let mut session = m.begin().await?;
                for model in models {
                    m.insert::<documents::Entity>(session.as_mut(), model)
                        .await?;
                }
                m.commit(session).await
            })
            .await;
    }
    if let Err(e) = m.insert_many::<documents::Entity>(models).await {
        let ids: Vec<&str> = models.iter().map(|d| d.id.as_str()).collect();
        m.delete::<documents::Entity>(None, doc! { "_id": { "$in": ids } })
            .await?;
        return Err(e);
    }
    Ok(())
}

/// The `k` documents of `collection` with the query's dimensions most similar to
/// `query`, best first, among those whose metadata has every key of `filter` with an
/// equal value.
pub(crate) async fn search(
    m: &Mongo,
    collection: &str,
    query: &[f32],
    k: usize,
    filter: Option<&Map<String, Value>>,
) -> Result<Vec<(documents::Model, f32)>> {
    let dimensions =
        i64::try_from(query.len()).map_err(|_| Error::invalid_input("query vector is too long"))?;
    let query_norm = norm(query);
    let mut top: TopK<documents::Model> = TopK::new(k);
    let mut cursor = m
        .coll::<documents::Entity>()
        .find(doc! { "collection": collection, "dimensions": dimensions })
        .await
        .map_err(|e| m.map_err(e))?;
    while let Some(raw) = cursor.try_next().await.map_err(|e| m.map_err(e))? {
        let model = <documents::Entity as Row>::from_doc(raw)?;
        if let Some(filter) = filter {
            let matches = filter
                .iter()
                .all(|(key, want)| model.metadata.get(key) == Some(want));
            if !matches {
                continue;
            }
        }
        let Some(vector) = decode_vector(&model.vector) else {
            continue;
        };
        let score = cosine_of(dot(query, &vector), query_norm, norm(&vector));
        if top.wants(score) {
            top.push(Scored {
                score,
                id: model.id.clone(),
                item: model,
            });
        }
    }
    Ok(top
        .into_sorted()
        .into_iter()
        .map(|c| (c.item, c.score))
        .collect())
}
