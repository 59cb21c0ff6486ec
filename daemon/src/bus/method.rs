//! The one method wrapper. Every `org.bmcd` method body is one call to
//! [`Methods::call`], which, in this order:
//!
//! 1. takes the interface and member from the message header (never from a
//!    string repeated in the adapter) and finds the policy row; a method
//!    without one is refused (fail closed);
//! 2. identifies the caller through the bus driver and checks its role;
//! 3. checks `options` (keys the method does not know are
//!    `InvalidArgument`) and the method's own arguments (`check`);
//! 4. for a sensitive method, uses the caller's re-authentication grant
//!    (arguments are checked before, so a bad call costs no grant);
//! 5. runs the action, mapping the controller's typed error to its named
//!    D-Bus error (`Into<bmcd_api::Error>`, spelled once per error type in
//!    the adapter files);
//! 6. hands every mutating call (the policy row says which), allowed or
//!    refused, with its outcome, to the audit hook.
//!
//! A refusal in steps 1–4 changes nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bmcd_api::Error;
use zbus::message::Header;
use zbus::zvariant::OwnedValue;

use super::audit::{Audit, AuditRecord};
use crate::auth::{policy, Auth, Caller, Rule};

/// The `options: a{sv}` argument of mutating methods.
pub type Options = HashMap<String, OwnedValue>;

/// The wrapper's shared parts: authorization and the audit hook.
pub struct Methods {
    pub auth: Arc<Auth>,
    audit: Arc<dyn Audit>,
}

/// A controller or store error, as the `Internal` D-Bus error.
pub fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Refuse every key of `options` that is not in `known`, so that a client
/// relying on an option learns it is not supported instead of being
/// silently ignored.
pub fn check_options(options: &Options, known: &[&str]) -> Result<(), Error> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(Error::InvalidArgument(if known.is_empty() {
            format!("unknown option '{k}' (this method takes none)")
        } else {
            format!("unknown option '{k}' (known: {})", known.join(", "))
        })),
    }
}

/// Parse an enum word of the contract; a bad word is `InvalidArgument`
/// naming the valid ones.
pub fn parse<T: std::str::FromStr<Err = bmcd_api::UnknownVariant>>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|e: bmcd_api::UnknownVariant| Error::InvalidArgument(e.to_string()))
}

impl Methods {
    pub fn new(auth: Arc<Auth>, audit: Arc<dyn Audit>) -> Arc<Methods> {
        Arc::new(Methods { auth, audit })
    }

    /// Run one method call; see the module documentation. `options` is
    /// `None` for the few methods without an `a{sv}` (queries);
    /// `known_options` lists the keys the method accepts; `args` describes
    /// the arguments for the audit record (never a secret); `check`
    /// validates them and returns what `action` needs.
    pub async fn call<C, T, E, Fut>(
        &self,
        hdr: &Header<'_>,
        options: Option<&Options>,
        known_options: &[&str],
        args: String,
        check: impl FnOnce() -> Result<C, Error>,
        action: impl FnOnce(Caller, C) -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Into<Error>,
    {
        // The generic part is kept small: the policy lookup, the caller's
        // identification and the audit are the same code for every method.
        let call = Call::of(hdr, &args);
        let (caller, rule) = self.admit(&call, hdr).await?;
        let checked = self.auth.permit(&caller, rule, || {
            if let Some(o) = options {
                check_options(o, known_options)?;
            }
            check()
        });
        let input = match checked {
            Ok(v) => v,
            Err(e) => {
                self.record(&call, Some(&caller), rule.mutating, Err(&e))
                    .await;
                return Err(e);
            }
        };
        let result = action(caller.clone(), input).await.map_err(Into::into);
        self.record(
            &call,
            Some(&caller),
            rule.mutating,
            result.as_ref().map(|_| ()),
        )
        .await;
        result
    }

    /// The policy row of the call and its caller, or the refusal (audited).
    async fn admit(
        &self,
        call: &Call<'_>,
        hdr: &Header<'_>,
    ) -> Result<(Caller, &'static Rule), Error> {
        let Some(rule) = policy::lookup(call.interface, call.method) else {
            log::error!("no policy for {}.{}: refused", call.interface, call.method);
            let e = Error::PermissionDenied(format!(
                "{}.{} has no policy: refused",
                call.interface, call.method
            ));
            self.record(call, None, true, Err(&e)).await;
            return Err(e);
        };
        match self.auth.caller(hdr).await {
            Ok(c) => Ok((c, rule)),
            Err(e) => {
                self.record(call, None, rule.mutating, Err(&e)).await;
                Err(e)
            }
        }
    }

    /// Hand a mutating call's outcome to the audit hook and wait until it
    /// is stored (before the reply is sent).
    async fn record(
        &self,
        call: &Call<'_>,
        caller: Option<&Caller>,
        mutating: bool,
        outcome: Result<(), &Error>,
    ) {
        if mutating {
            let pending = self.audit.record(&AuditRecord {
                caller,
                sender: call.sender,
                interface: call.interface,
                method: call.method,
                args: call.args,
                outcome,
            });
            pending.await;
        }
    }
}

/// What the wrapper knows of one call from its header.
struct Call<'a> {
    interface: &'a str,
    method: &'a str,
    sender: &'a str,
    args: &'a str,
}

impl<'a> Call<'a> {
    fn of(hdr: &'a Header<'_>, args: &'a str) -> Call<'a> {
        Call {
            interface: hdr.interface().map(|i| i.as_str()).unwrap_or_default(),
            method: hdr.member().map(|m| m.as_str()).unwrap_or_default(),
            sender: hdr.sender().map(|s| s.as_str()).unwrap_or_default(),
            args,
        }
    }
}

impl Methods {
    /// [`Methods::call`] for the common shape: an `options` argument that
    /// knows no key yet, and no argument check before the grant.
    pub async fn act<T, E, Fut>(
        &self,
        hdr: &Header<'_>,
        options: &Options,
        args: String,
        action: impl FnOnce(Caller) -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Into<Error>,
    {
        self.call(hdr, Some(options), &[], args, || Ok(()), |c, ()| action(c))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_against_the_known_keys() {
        let mut o = Options::new();
        assert!(check_options(&o, &[]).is_ok());
        o.insert("activate".into(), OwnedValue::from(true));
        assert!(check_options(&o, &["activate"]).is_ok());
        let e = check_options(&o, &[]).err().map(|e| e.message());
        assert_eq!(
            e.as_deref(),
            Some("unknown option 'activate' (this method takes none)")
        );
        let e = check_options(&o, &["force-version"])
            .err()
            .map(|e| e.message());
        assert_eq!(
            e.as_deref(),
            Some("unknown option 'activate' (known: force-version)")
        );
    }
}
