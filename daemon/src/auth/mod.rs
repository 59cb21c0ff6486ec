//! Authorization and re-authentication.
//!
//! Every bus method goes through the one method wrapper
//! (`bus::method::Methods::call`), which, before the method looks at its
//! arguments or acts:
//! 1. finds the method's row in the one policy table (`policy::POLICY`;
//!    no row = refused, fail closed), from the message header's interface
//!    and member;
//! 2. asks the bus driver who sent the message
//!    (`GetConnectionCredentials` of the header's sender: UnixUserID and
//!    UnixGroupIDs, which dbus-daemon takes from the socket), never trusting
//!    anything the caller says;
//! 3. maps uid and groups to a role and refuses a role below the row's
//!    (`PermissionDenied`, naming the role needed);
//! 4. for a sensitive row, consumes the connection's re-authentication
//!    grant or refuses (`AuthenticationRequired`).
//!
//! `Session1.Authenticate` runs PAM for the caller's own user (from its
//! uid), with a delay after every failure and a lockout per uid; success
//! gives the caller's connection a grant (`grants`). Grants die with the
//! connection: a task watches `NameOwnerChanged` and forgets unique names
//! that disappear. Every attempt is logged with target `auth` (the
//! authpriv facility); passwords are wiped after use (`Zeroizing`) and
//! never logged or echoed.
//!
//! Nothing is cached per connection except the grant, so a vanished name
//! leaves nothing usable behind.

pub mod grants;
pub mod identity;
pub mod lockout;
pub mod pam;
pub mod policy;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bmcd_api::Error;
use futures_lite::StreamExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::{BusName, UniqueName};
use zbus::Connection;
use zeroize::Zeroizing;

use crate::config::AuthConfig;
use crate::sync::lock;
use grants::{Grants, Kind};
use identity::Groups;
use lockout::{AfterFailure, Limits, Lockout};
pub use policy::{Role, Rule};

/// The caller of one method, as the bus driver reported it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its unique bus name (`:1.42`).
    pub conn: String,
    pub uid: u32,
    pub role: Role,
}

pub struct Auth {
    cfg: AuthConfig,
    groups: Groups,
    grants: Mutex<Grants>,
    lockout: Mutex<Lockout>,
    /// One PAM conversation at a time.
    pam: tokio::sync::Mutex<()>,
    /// The bus driver, once attached to a connection.
    bus: OnceLock<DBusProxy<'static>>,
    /// Where `Audit.Authentication` records go (Sync), once set.
    audit_log: OnceLock<Arc<crate::logs::Log>>,
}

fn seconds(d: Duration) -> u64 {
    // Round up: "locked out for another 0 s" would be confusing.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Auth {
    /// Resolve the role groups; nothing else happens until `attach`.
    pub fn new(cfg: AuthConfig) -> Arc<Auth> {
        let groups = Groups::resolve(&cfg.admin_group, &cfg.operator_group);
        if cfg.reauthenticate && !pam::service_configured(&cfg.pam_service) {
            log::error!(
                target: "auth",
                "PAM service '{}' is not configured: sensitive calls will be refused until /etc/pam.d/{0} is installed",
                cfg.pam_service
            );
        }
        if !cfg.reauthenticate {
            log::warn!(
                target: "auth",
                "auth.reauthenticate is false: sensitive calls need no password (test rigs only)"
            );
        }
        let limits = Limits {
            max_failures: cfg.max_failures,
            window: Duration::from_secs(u64::from(cfg.failure_window_s)),
            lock_for: Duration::from_secs(u64::from(cfg.lockout_s)),
        };
        Arc::new(Auth {
            groups,
            grants: Mutex::new(Grants::default()),
            lockout: Mutex::new(Lockout::new(limits)),
            pam: tokio::sync::Mutex::new(()),
            bus: OnceLock::new(),
            audit_log: OnceLock::new(),
            cfg,
        })
    }

    /// Use `conn`'s bus driver for caller credentials, and start forgetting
    /// the grants of connections that leave the bus. Call before serving.
    pub async fn attach(self: &Arc<Self>, conn: &Connection) -> zbus::Result<()> {
        let proxy = DBusProxy::new(conn).await?;
        // Subscribe before any grant can exist, so no departure is missed.
        let mut gone = proxy.receive_name_owner_changed().await?;
        let _ = self.bus.set(proxy);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(sig) = gone.next().await {
                let Ok(args) = sig.args() else { continue };
                let BusName::Unique(name) = args.name() else {
                    continue;
                };
                if args.new_owner().is_none() {
                    let Some(auth) = me.upgrade() else { return };
                    if lock(&auth.grants).forget(name.as_str()) {
                        log::debug!(target: "auth", "{name} left the bus: its grant is gone");
                    }
                }
            }
        });
        Ok(())
    }

    fn bus(&self) -> Result<&DBusProxy<'static>, Error> {
        self.bus
            .get()
            .ok_or_else(|| Error::Internal("authorization is not ready".into()))
    }

    /// Who sent the message of `hdr`, according to the bus driver.
    pub async fn caller(&self, hdr: &Header<'_>) -> Result<Caller, Error> {
        let sender = hdr.sender().ok_or_else(|| {
            Error::PermissionDenied("the message has no sender: cannot identify the caller".into())
        })?;
        let creds = self
            .bus()?
            .get_connection_credentials(BusName::Unique(sender.clone()))
            .await
            .map_err(|e| Error::Internal(format!("cannot identify the caller: {e}")))?;
        let uid = creds.unix_user_id().ok_or_else(|| {
            Error::PermissionDenied("the bus does not know the caller's uid".into())
        })?;
        let role = match creds.unix_group_ids() {
            Some(gids) => self.groups.role_of(uid, gids),
            None => {
                // Older buses do not report groups: fall back to the group
                // database for this uid.
                log::debug!(target: "auth", "bus reports no UnixGroupIDs; using the group database");
                let gids = tokio::task::spawn_blocking(move || identity::database_groups(uid))
                    .await
                    .unwrap_or_default();
                self.groups.role_of(uid, &gids)
            }
        };
        Ok(Caller {
            conn: sender.to_string(),
            uid,
            role,
        })
    }

    /// Decide whether `caller` may make the call of `rule` now: its role,
    /// then `validate` (the call's arguments), then, for a sensitive rule,
    /// the connection's re-authentication grant. Arguments are checked
    /// before the grant is used: a sensitive call with a bad argument is
    /// refused without costing the caller its grant (or a password prompt,
    /// since `AuthenticationRequired` comes only for calls that would
    /// otherwise be carried out). A refusal changes nothing.
    pub fn permit<T>(
        &self,
        caller: &Caller,
        rule: &Rule,
        validate: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (interface, method) = (rule.interface, rule.method);
        if caller.role < rule.role {
            log::warn!(
                target: "auth",
                "denied {interface}.{method} to uid {} ({}): needs {}",
                caller.uid, caller.role, rule.role
            );
            return Err(Error::PermissionDenied(format!(
                "{method} needs the {} role; uid {} has {}",
                rule.role, caller.uid, caller.role
            )));
        }
        let value = validate()?;
        if rule.sensitive && self.cfg.reauthenticate {
            let ok = lock(&self.grants).consume(&caller.conn, caller.uid, Instant::now());
            if !ok {
                log::info!(
                    target: "auth",
                    "{interface}.{method} by uid {} needs re-authentication",
                    caller.uid
                );
                return Err(Error::AuthenticationRequired(format!(
                    "{method} is sensitive: authenticate first (org.bmcd.Session1.Authenticate)"
                )));
            }
            log::info!(
                target: "auth",
                "{interface}.{method} by uid {} ({}) with a fresh authentication",
                caller.uid, caller.conn
            );
        }
        Ok(value)
    }

    /// Write every authentication attempt to `log` (the audit log) as an
    /// `Audit.Authentication` record. Call once, before serving.
    pub fn set_audit_log(&self, log: Arc<crate::logs::Log>) {
        let _ = self.audit_log.set(log);
    }

    /// `Session1.Authenticate` for `caller` (already authorized). Every
    /// attempt leaves an `Audit.Authentication` record (result `ok`,
    /// `failed` or `locked-out`; never the password), fsynced before this
    /// returns.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        password: Zeroizing<String>,
    ) -> Result<(), Error> {
        let result = self.attempt(caller, password).await;
        if let Some(log) = self.audit_log.get() {
            let result_word = match &result {
                Ok(()) => "ok",
                Err(Error::LockedOut(_)) => "locked-out",
                Err(_) => "failed",
            };
            let detail = match &result {
                Ok(()) => String::new(),
                Err(e) => {
                    use zbus::DBusError;
                    e.name().to_string()
                }
            };
            let uid = caller.uid;
            crate::bus::audit::append_sync(log.clone(), move || {
                let user = crate::bus::audit::user_of(Some(uid));
                let severity = if result_word == "ok" {
                    bmcd_api::LogSeverity::Notice
                } else {
                    bmcd_api::LogSeverity::Warning
                };
                let why = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                crate::logstore::NewEntry {
                    time_us: crate::clock::now_us(),
                    severity: severity.level(),
                    source: "auth".into(),
                    message_id: "Audit.Authentication".into(),
                    message: format!("authentication of {user} (uid {uid}): {result_word}{why}"),
                    data: vec![
                        ("uid".to_owned(), uid.to_string()),
                        ("user".to_owned(), user),
                        ("result".to_owned(), result_word.to_owned()),
                    ],
                }
            })
            .await;
        }
        result
    }

    async fn attempt(&self, caller: &Caller, password: Zeroizing<String>) -> Result<(), Error> {
        if password.len() > self.cfg.max_password_bytes {
            return Err(Error::InvalidArgument(format!(
                "the password is longer than {} bytes",
                self.cfg.max_password_bytes
            )));
        }
        if password.contains('\0') {
            return Err(Error::InvalidArgument(
                "the password contains a NUL byte".into(),
            ));
        }
        if !pam::service_configured(&self.cfg.pam_service) {
            log::error!(
                target: "auth",
                "PAM service '{}' is not configured (no /etc/pam.d/{0}): authentication refused without counting a failure",
                self.cfg.pam_service
            );
            return Err(Error::Unavailable(format!(
                "authentication is not available: PAM service '{}' is not installed",
                self.cfg.pam_service
            )));
        }
        let uid = caller.uid;
        let user = identity::user_name(uid);
        let who = user.clone().unwrap_or_else(|| "?".into());

        // One conversation at a time; the lockout is checked and updated
        // under the same lock, so parallel attempts cannot outrun it.
        let result = {
            let _one = self.pam.lock().await;
            let locked = lock(&self.lockout).check(uid, Instant::now());
            if let Err(left) = locked {
                log::warn!(
                    target: "auth",
                    "authentication refused: user={who} uid={uid} locked out for another {} s",
                    seconds(left)
                );
                Err(Error::LockedOut(format!(
                    "too many failed attempts: uid {uid} is locked out for another {} s",
                    seconds(left)
                )))
            } else {
                self.run_pam(caller, user.as_deref(), password).await
            }
        };
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(self.cfg.failure_delay_ms)).await;
        }
        result
    }

    async fn run_pam(
        &self,
        caller: &Caller,
        user: Option<&str>,
        password: Zeroizing<String>,
    ) -> Result<(), Error> {
        let uid = caller.uid;
        let outcome = match user {
            None => pam::Outcome::Refused(format!("uid {uid} has no passwd entry")),
            Some(user) => {
                let service = self.cfg.pam_service.clone();
                let user = user.to_owned();
                tokio::task::spawn_blocking(move || pam::check(&service, &user, password))
                    .await
                    .unwrap_or_else(|e| pam::Outcome::Broken(format!("PAM task failed: {e}")))
            }
        };
        let who = user.unwrap_or("?");
        let now = Instant::now();
        match outcome {
            pam::Outcome::Success => {
                lock(&self.lockout).success(uid);
                let kind = match self.cfg.grant_seconds {
                    0 => Kind::OneCall,
                    s => Kind::Until(
                        now.checked_add(Duration::from_secs(u64::from(s)))
                            .unwrap_or(now),
                    ),
                };
                {
                    let mut g = lock(&self.grants);
                    g.prune(now);
                    g.grant(&caller.conn, uid, kind);
                }
                // The connection may have left between its call and now, after
                // the NameOwnerChanged that would have cleared the grant.
                if !self.still_connected(&caller.conn).await {
                    lock(&self.grants).forget(&caller.conn);
                }
                log::info!(
                    target: "auth",
                    "authentication succeeded: user={who} uid={uid} connection={}",
                    caller.conn
                );
                Ok(())
            }
            pam::Outcome::Refused(why) => {
                let after = lock(&self.lockout).failure(uid, now);
                log::warn!(
                    target: "auth",
                    "authentication failed: user={who} uid={uid} connection={} ({why})",
                    caller.conn
                );
                match after {
                    AfterFailure::Remaining(n) => Err(Error::AuthenticationFailed(format!(
                        "authentication failed for {who}; {n} more failure{} will lock uid {uid} out",
                        if n == 1 { "" } else { "s" }
                    ))),
                    AfterFailure::Locked(d) => {
                        log::warn!(
                            target: "auth",
                            "uid {uid} ({who}) locked out for {} s after {} failures",
                            seconds(d),
                            self.cfg.max_failures
                        );
                        Err(Error::LockedOut(format!(
                            "authentication failed for {who}; too many failures: uid {uid} is locked out for {} s",
                            seconds(d)
                        )))
                    }
                }
            }
            pam::Outcome::Broken(why) => {
                log::error!(
                    target: "auth",
                    "authentication error: user={who} uid={uid} PAM service '{}': {why}",
                    self.cfg.pam_service
                );
                Err(Error::Unavailable(format!(
                    "authentication is not available (PAM service '{}' failed; see the log)",
                    self.cfg.pam_service
                )))
            }
        }
    }

    async fn still_connected(&self, conn: &str) -> bool {
        let Ok(bus) = self.bus() else { return false };
        let Ok(name) = UniqueName::try_from(conn) else {
            return false;
        };
        bus.name_has_owner(BusName::Unique(name))
            .await
            .unwrap_or(false)
    }

    /// `Session1.WhoAmI`: uid, user name ("" if none) and role.
    pub fn who(&self, caller: &Caller) -> (u32, String, String) {
        (
            caller.uid,
            identity::user_name(caller.uid).unwrap_or_default(),
            caller.role.to_string(),
        )
    }
}
