//! `org.bmcd.Session1` at `/org/bmcd`: re-authentication and identity.

use std::sync::Arc;

use bmcd_api::Error;
use zbus::interface;
use zbus::message::Header;
use zeroize::Zeroizing;

use super::method::{Methods, Options};

pub struct SessionIface {
    pub m: Arc<Methods>,
}

#[interface(name = "org.bmcd.Session1")]
impl SessionIface {
    /// Run PAM for the caller's own user; on success the caller's
    /// connection may make sensitive calls (one, or for a while).
    async fn authenticate(
        &self,
        password: String,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        // Wiped when dropped, whichever way this returns.
        let password = Zeroizing::new(password);
        // The audit record names no argument: the only one is the secret.
        self.m
            .act(&hdr, &options, String::new(), |caller| async move {
                self.m.auth.authenticate(&caller, password).await
            })
            .await
    }

    /// The caller's uid, user name ("" if it has none) and role.
    #[zbus(name = "WhoAmI")]
    async fn who_am_i(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(u32, String, String), Error> {
        self.m
            .call(
                &hdr,
                None,
                &[],
                String::new(),
                || Ok(()),
                |caller, ()| async move { Ok::<_, Error>(self.m.auth.who(&caller)) },
            )
            .await
    }
}
