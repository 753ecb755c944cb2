//! How users' things are kept apart. Files live in storage at
//! `files/<owner id>/<file id>`, where the file id is 128 random bits: every key is built
//! from the owner's id, so nothing addressed through one user can reach another's file,
//! and no key can be guessed from anyone's ids. Names a user chooses (chat sessions,
//! document collections) are stored as `<user id>:<name>`, so two users' `main` never
//! meet. Used by the routes and by the background tasks.

use zeroscale_core::storage::ObjectKey;
use zeroscale_core::{Error, Result};

/// Longest name a user chooses (the stored name also carries the 36-character user id).
pub(crate) const MAX_NAME: usize = 90;

/// Checks a user-chosen name (`what` names it in the error): 1 to [`MAX_NAME`]
/// characters of letters, digits, `-`, `_` and `.`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{what} must be 1 to {MAX_NAME} characters of letters, digits, `-`, `_` and `.`"
        )))
    }
}

/// The stored form of `user_id`'s name `name`.
pub(crate) fn scoped(user_id: &str, name: &str) -> String {
    format!("{user_id}:{name}")
}

/// A new random file id: 32 hex characters.
pub(crate) fn new_file_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    zeroscale_core::hex(&bytes)
}

/// The prefix under which every file of `user_id` is stored.
pub(crate) fn owner_prefix(user_id: &str) -> String {
    format!("files/{user_id}/")
}

/// The storage key of `user_id`'s file `id`; an id that is not a file id is not found.
pub(crate) fn file_key(user_id: &str, id: &str) -> Result<ObjectKey> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::not_found(format!("file {id}")));
    }
    ObjectKey::parse(format!("{}{id}", owner_prefix(user_id)))
}
