//! object_store's errors as core's kinds, decided by the error's variant (never its text).

use object_store::{GetRange, ObjectStore, ObjectStoreExt};
use zeroscale_core::storage::ObjectKey;
use zeroscale_core::{Error, Result};

/// Maps object_store's errors to core's kinds. A `Generic` error caused by a store that
/// cannot be reached (refused, reset or timed-out connections, found by the types in its
/// source chain) becomes [`Error::Unavailable`] (503, retry later); other `Generic` errors
/// (a server's error answer, anything object_store does not classify) become
/// [`Error::Backend`]; an unsatisfiable range is recognised by [`range_error`], which can
/// ask the store for the object's size.
pub(crate) fn map_os_err(backend: &str, key: &ObjectKey, e: object_store::Error) -> Error {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Error::not_found(format!("object `{key}`")),
        E::AlreadyExists { .. } => Error::already_exists(format!("object `{key}`")),
        E::Precondition { .. } => Error::conflict(format!("object `{key}` changed meanwhile")),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            Error::not_supported(e.to_string(), backend)
        }
        E::InvalidPath { .. } => Error::invalid_input(format!("object key `{key}`: {e}")),
        other if unreachable(&other) => Error::unavailable_from(
            format!("{backend} storage cannot be reached (object `{key}`)"),
            other,
        ),
        other => Error::backend(backend.to_owned(), other),
    }
}

/// An error that is not about one object (a listing): [`Error::Unavailable`] when the
/// store cannot be reached, else [`Error::Backend`].
pub(crate) fn map_store_err(backend: &str, e: object_store::Error) -> Error {
    if unreachable(&e) {
        Error::unavailable_from(format!("{backend} storage cannot be reached"), e)
    } else {
        Error::backend(backend.to_owned(), e)
    }
}

/// Whether `e` comes from a connection the store did not answer: an HTTP client error of
/// kind connect, request, timeout or interrupted, a request the HTTP client dropped
/// because its pooled connection closed before it was sent (hyper's "canceled", which
/// object_store leaves unclassified), or an I/O error of a refused, reset or timed-out
/// connection, anywhere in its source chain.
fn unreachable(e: &object_store::Error) -> bool {
    use std::io::ErrorKind as Io;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        #[cfg(any(feature = "s3", feature = "azure"))]
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if matches!(
                http.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            ) {
                return true;
            }
        }
        #[cfg(any(feature = "s3", feature = "azure"))]
        if let Some(hyper) = err.downcast_ref::<hyper::Error>()
            && (hyper.is_canceled() || hyper.is_closed() || hyper.is_incomplete_message())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::NotConnected
                    | Io::TimedOut
                    | Io::BrokenPipe
            )
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// The error for a ranged read that failed with `e`: `InvalidInput` when the range cannot
/// be satisfied for the object as it is (checked against its size with one `head`, since
/// each store reports this differently: an HTTP 416, or a private error type), else the
/// usual mapping.
pub(crate) async fn range_error(
    store: &dyn ObjectStore,
    backend: &str,
    key: &ObjectKey,
    path: &object_store::path::Path,
    range: &GetRange,
    e: object_store::Error,
) -> Error {
    if !matches!(e, object_store::Error::Generic { .. }) {
        return map_os_err(backend, key, e);
    }
    match unsatisfiable(store, path, range).await {
        Ok(Some(size)) => Error::invalid_input(format!(
            "object `{key}` is {size} bytes long: the range {} is outside it",
            describe(range)
        )),
        _ => map_os_err(backend, key, e),
    }
}

/// `Some(size)` when `range` cannot be read from the object at `path`.
async fn unsatisfiable(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    range: &GetRange,
) -> Result<Option<u64>, object_store::Error> {
    let meta = store.head(path).await?;
    Ok(range.as_range(meta.size).is_err().then_some(meta.size))
}

fn describe(range: &GetRange) -> String {
    match range {
        GetRange::Bounded(r) => format!("{}..{}", r.start, r.end),
        GetRange::Offset(o) => format!("{o}.."),
        GetRange::Suffix(n) => format!("(last {n} bytes)"),
    }
}

/// Checks a range before any request: an empty or reversed range is the caller's error.
pub(crate) fn check_range(key: &ObjectKey, range: &GetRange) -> Result<()> {
    if let GetRange::Bounded(r) = range
        && r.end <= r.start
    {
        return Err(Error::invalid_input(format!(
            "object `{key}`: the range {}..{} is empty or reversed",
            r.start, r.end
        )));
    }
    Ok(())
}
