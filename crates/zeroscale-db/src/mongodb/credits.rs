//! Credits on MongoDB: a reservation is held on the user's own document, so the balance
//! and the hold change together in one atomic single-document update whether or not the
//! server has transactions.
//!
//! - Reserve: insert the pending generation, then debit the balance and record the hold
//!   as `holds.<generation id>: cost` in one conditional update (`credits >= cost`,
//!   active). Too few credits: the generation is deleted again. (Holds are a subdocument,
//!   not an array: the test server ignores `$addToSet` next to `$inc` and matches no
//!   array element.)
//! - Settle (complete or fail): mark the generation finished (only from pending), then
//!   refund or charge and remove the hold in one update that matches only while the user
//!   still holds it, so a settlement applies at most once.
//! - With transactions (`database.transactions`), both writes of each step commit
//!   together. Without, a crash between them leaves either a pending generation that no
//!   user holds (the sweeper fails it, and its settlement refunds nothing: nothing was
//!   taken), or a finished generation still held ([`settle_unsettled`], which the sweeper
//!   runs, settles it). Either way "granted = balance + held + spent" is restored.

use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use zeroscale_core::domain::GenerationStatus;
use zeroscale_core::{Error, Result};

use super::{Mongo, date, id_is, now_ms};
use crate::domain::entity::{generations, users};

/// For tests: when set, [`reserve`] and [`finish`] stop after their first write, as a
/// crash would.
pub(crate) static CRASH_AFTER_FIRST_WRITE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn crashed() -> bool {
    CRASH_AFTER_FIRST_WRITE.load(std::sync::atomic::Ordering::SeqCst)
}

/// Inserts the pending `generation` and takes its credits from its user. Too few credits
/// is [`Error::Conflict`], a deactivated user [`Error::PermissionDenied`].
pub(crate) async fn reserve(m: &Mongo, generation: &generations::Model) -> Result<()> {
    m.retry_transient(|| reserve_once(m, generation)).await
}

async fn reserve_once(m: &Mongo, generation: &generations::Model) -> Result<()> {
    let mut session = m.begin().await?;
    m.insert::<generations::Entity>(session.as_mut(), generation)
        .await?;
    if crashed() {
        return Err(Error::unavailable("simulated crash after the first write"));
    }
    let cost = generation.reserved_credits;
    let mut filter = id_is(&generation.user_id);
    filter.insert("active", doc! { "$in": [true, 1] });
    filter.insert("credits", doc! { "$gte": cost });
    let update = doc! {
        "$inc": { "credits": -cost },
        "$set": { format!("holds.{}", generation.id): cost, "updated_at": date(now_ms()) },
    };
    let debited = m
        .update::<users::Entity>(session.as_mut(), filter, update)
        .await?;
    if debited == 1 {
        return m.commit(session).await;
    }
    // Not taken: undo the insert (rolled back with the transaction when there is one).
    let rolled_back = session.is_some();
    m.abort(session).await;
    if !rolled_back {
        m.delete::<generations::Entity>(None, id_is(&generation.id))
            .await?;
    }
    let user = m
        .find_one::<users::Entity>(None, id_is(&generation.user_id))
        .await?
        .ok_or_else(|| Error::not_found(format!("user {}", generation.user_id)))?;
    Err(if user.active {
        Error::conflict(format!(
            "insufficient credits: balance is {}, this needs {cost}",
            user.credits
        ))
    } else {
        Error::permission_denied("the user is deactivated")
    })
}

/// Moves pending generation `id` to `status` with `set`, then settles its credits:
/// `refund` back to the user (negative: a further charge, never below zero). Returns the
/// generation as stored; a finished one is [`Error::Conflict`].
pub(crate) async fn finish(
    m: &Mongo,
    id: &str,
    status: GenerationStatus,
    set: Document,
    refund: impl Fn(&generations::Model) -> i64,
) -> Result<generations::Model> {
    m.retry_transient(|| finish_once(m, id, status, set.clone(), &refund))
        .await
}

async fn finish_once(
    m: &Mongo,
    id: &str,
    status: GenerationStatus,
    mut set: Document,
    refund: &impl Fn(&generations::Model) -> i64,
) -> Result<generations::Model> {
    let mut session = m.begin().await?;
    let at = date(now_ms());
    set.insert("status", status.as_str());
    set.insert("updated_at", at.clone());
    set.insert("completed_at", at);
    let mut filter = id_is(id);
    filter.insert("status", GenerationStatus::Pending.as_str());
    let Some(generation) = m
        .find_update::<generations::Entity>(session.as_mut(), filter, doc! { "$set": set })
        .await?
    else {
        m.abort(session).await;
        return Err(
            match m.find_one::<generations::Entity>(None, id_is(id)).await? {
                Some(g) => Error::conflict(format!("generation {id} is already {}", g.status)),
                None => Error::not_found(format!("generation {id}")),
            },
        );
    };
    if crashed() {
        return Err(Error::unavailable("simulated crash after the first write"));
    }
    settle(m, session.as_mut(), &generation, refund(&generation)).await?;
    m.commit(session).await?;
    Ok(generation)
}

/// Gives `refund` back to the generation's user and drops the hold, once: only while the
/// user still holds it. A negative refund charges, but never below zero.
async fn settle(
    m: &Mongo,
    mut session: Option<&mut ClientSession>,
    generation: &generations::Model,
    refund: i64,
) -> Result<()> {
    let hold = format!("holds.{}", generation.id);
    let held = || {
        let mut filter = id_is(&generation.user_id);
        filter.insert(hold.clone(), doc! { "$exists": true });
        filter
    };
    let at = date(now_ms());
    let mut filter = held();
    if refund < 0 {
        filter.insert("credits", doc! { "$gte": -refund });
    }
    let update = doc! {
        "$inc": { "credits": refund },
        "$unset": { hold.clone(): "" },
        "$set": { "updated_at": at.clone() },
    };
    let settled = m
        .update::<users::Entity>(session.as_deref_mut(), filter, update)
        .await?;
    if settled == 0 && refund < 0 {
        // Too few credits for the whole overage: take what there is.
        let update = doc! {
            "$set": { "credits": 0_i64, "updated_at": at },
            "$unset": { hold.clone(): "" },
        };
        m.update::<users::Entity>(session, held(), update).await?;
    }
    Ok(())
}

/// What settling a finished generation gives back: everything when it failed; the
/// difference between what it reserved and what it cost when it succeeded.
pub(crate) fn refund_of(generation: &generations::Model) -> i64 {
    match generation.status.as_str() {
        s if s == GenerationStatus::Succeeded.as_str() => {
            generation.reserved_credits - generation.actual_cost.unwrap_or(0)
        }
        _ => generation.reserved_credits,
    }
}

/// Settles finished generations whose user still holds them (a crash between finishing
/// and settling, without transactions); returns how many. At most `limit` users that
/// have held credits are looked at.
pub(crate) async fn settle_unsettled(m: &Mongo, limit: u64) -> Result<usize> {
    use futures::TryStreamExt;
    let holders: Vec<Document> = m
        .coll::<users::Entity>()
        .find(doc! { "holds": { "$exists": true } })
        .projection(doc! { "holds": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(|e| m.map_err(e))?
        .try_collect()
        .await
        .map_err(|e| m.map_err(e))?;
    let mut settled = 0;
    for holder in holders {
        let Ok(held) = holder.get_document("holds") else {
            continue;
        };
        for id in held.keys() {
            let Some(generation) = m.find_one::<generations::Entity>(None, id_is(id)).await? else {
                continue;
            };
            if generation.status != GenerationStatus::Pending.as_str() {
                settle(m, None, &generation, refund_of(&generation)).await?;
                settled += 1;
            }
        }
    }
    Ok(settled)
}
