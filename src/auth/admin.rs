//! The admin role: whether a login may use the admin console and the admin API. Read from the
//! store at every request, never from the token or the principal cache: a role withdrawn (`wsguard
//! user admin NAME --off`, from any machine) or a user disabled is refused from the next request
//! on, on every node.

use super::{Identity, Issuer};
use crate::store::{Store, StoreResult};

/// Whether `identity` is a wsguard login of an active user who holds the admin role now. A trusted
/// issuer's or the connect proxy's user has no row, hence no role.
pub(crate) async fn is_admin(store: &dyn Store, identity: &Identity) -> StoreResult<bool> {
    if identity.issuer != Issuer::Own {
        return Ok(false);
    }
    let user = store.user(&identity.user.username).await?;
    Ok(user.is_some_and(|user| user.admin && !user.disabled))
}
