//! One PAM transaction: authenticate `user` with `password` through the
//! configured service, then account management (expired or locked
//! accounts are refused even with the right password).
//!
//! Blocking: PAM modules read files, may sleep (pam_faildelay) and may talk
//! to other services, so callers run this in `spawn_blocking`.
//!
//! The conversation is unattended: the user is given at `pam_start`, the
//! first hidden prompt (PAM_PROMPT_ECHO_OFF) is answered with the password,
//! informational and error texts are logged, and anything else (a visible
//! prompt such as "login:", a second secret such as a one-time code, radio
//! or binary prompts) is refused with PAM_CONV_ERR, which fails the
//! transaction rather than guessing an answer.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};

use nonstick::conv::Exchange;
use nonstick::{AuthnFlags, Conversation, ErrorCode, Transaction, TransactionBuilder};
use zeroize::Zeroizing;

/// How a PAM transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The user could not be authenticated or may not use the service now
    /// (wrong password, unknown user, expired or locked account…): counts
    /// as a failed attempt. The text is PAM's, for the log only.
    Refused(String),
    /// PAM itself failed (missing service file or module, system error):
    /// not the caller's fault, does not count as an attempt.
    Broken(String),
}

struct PasswordConv {
    password: Zeroizing<String>,
    answered: Cell<bool>,
}

fn text(s: &OsStr) -> String {
    s.to_string_lossy().chars().take(200).collect()
}

impl Conversation for PasswordConv {
    fn communicate(&self, messages: &[Exchange]) {
        for m in messages {
            match m {
                Exchange::MaskedPrompt(q) if !self.answered.get() => {
                    self.answered.set(true);
                    // nonstick copies this into the C heap for PAM (which
                    // wipes its copy); this transient copy is freed by
                    // nonstick without wiping (see ARCHITECTURE.md).
                    q.set_answer(Ok(OsString::from(self.password.as_str())));
                }
                Exchange::MaskedPrompt(q) => {
                    log::warn!(
                        target: "auth",
                        "PAM asked for a second secret ({}): refused",
                        text(q.question())
                    );
                    q.set_answer(Err(ErrorCode::ConversationError));
                }
                Exchange::Prompt(q) => {
                    log::warn!(
                        target: "auth",
                        "PAM asked a visible question ({}): refused",
                        text(q.question())
                    );
                    q.set_answer(Err(ErrorCode::ConversationError));
                }
                Exchange::Info(i) => {
                    log::info!(target: "auth", "PAM: {}", text(i.question()));
                    i.set_answer(Ok(()));
                }
                Exchange::Error(e) => {
                    log::info!(target: "auth", "PAM error message: {}", text(e.question()));
                    e.set_answer(Ok(()));
                }
                other => {
                    log::warn!(target: "auth", "PAM sent an unsupported prompt type: refused");
                    other.set_error(ErrorCode::ConversationError);
                }
            }
        }
    }
}

fn classify(stage: &str, e: ErrorCode) -> Outcome {
    let msg = format!("{stage}: {e}");
    match e {
        ErrorCode::OpenError
        | ErrorCode::SymbolError
        | ErrorCode::ServiceError
        | ErrorCode::SystemError
        | ErrorCode::BufferError
        | ErrorCode::Abort
        | ErrorCode::NoModuleData => Outcome::Broken(msg),
        _ => Outcome::Refused(msg),
    }
}

/// Whether a PAM configuration for `service` exists where Linux-PAM looks
/// (`/etc/pam.d`, the vendor directory `/usr/lib/pam.d`, or the service
/// directory of pam_wrapper in tests). Without one, PAM silently uses the
/// `other` service, which refuses everything: a correct password would
/// look wrong and count towards a lockout.
pub fn service_configured(service: &str) -> bool {
    if service.is_empty() || service.contains('/') {
        return false;
    }
    let mut dirs: Vec<std::path::PathBuf> = vec!["/etc/pam.d".into(), "/usr/lib/pam.d".into()];
    if std::env::var_os("PAM_WRAPPER").is_some_and(|v| v == "1") {
        if let Some(d) = std::env::var_os("PAM_WRAPPER_SERVICE_DIR") {
            dirs.insert(0, d.into());
        }
    }
    dirs.iter().any(|d| d.join(service).is_file())
}

/// Authenticate `user` through PAM service `service`. Blocking.
///
/// `service` and `user` must not contain NUL bytes (the configuration
/// validates the service; user names come from the passwd database).
pub fn check(service: &str, user: &str, password: Zeroizing<String>) -> Outcome {
    if service.contains('\0') || user.contains('\0') || password.contains('\0') {
        return Outcome::Refused("NUL byte in service, user or password".into());
    }
    let conv = PasswordConv {
        password,
        answered: Cell::new(false),
    };
    let mut tx = match TransactionBuilder::new_with_service(service)
        .username(user)
        .build(conv)
    {
        Ok(tx) => tx,
        Err(e) => return Outcome::Broken(format!("pam_start: {e}")),
    };
    let flags = AuthnFlags::SILENT | AuthnFlags::DISALLOW_NULL_AUTHTOK;
    if let Err(e) = tx.authenticate(flags) {
        return classify("authenticate", e);
    }
    if let Err(e) = tx.account_management(flags) {
        return classify("account", e);
    }
    Outcome::Success
    // Dropping `tx` calls pam_end and drops the conversation, which wipes
    // the password.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_lookup() {
        assert!(!service_configured(""));
        assert!(!service_configured("../etc/passwd"));
        assert!(!service_configured("bmcd-surely-not-installed"));
    }

    #[test]
    fn refuses_nul_without_pam() {
        let o = check("bmcd", "root", Zeroizing::new("a\0b".into()));
        assert!(matches!(o, Outcome::Refused(_)), "{o:?}");
    }

    #[test]
    fn conversation_answers_only_one_hidden_prompt() {
        use nonstick::conv::{InfoMsg, MaskedQAndA, QAndA, RadioQAndA};
        let conv = PasswordConv {
            password: Zeroizing::new("s3cret".into()),
            answered: Cell::new(false),
        };
        let p1 = MaskedQAndA::new(OsStr::new("Password: "));
        let info = InfoMsg::new(OsStr::new("hello"));
        let p2 = MaskedQAndA::new(OsStr::new("OTP: "));
        let login = QAndA::new(OsStr::new("login: "));
        let radio = RadioQAndA::new(OsStr::new("yes/no"));
        conv.communicate(&[
            p1.exchange(),
            info.exchange(),
            p2.exchange(),
            login.exchange(),
            radio.exchange(),
        ]);
        assert_eq!(p1.answer().ok(), Some(OsString::from("s3cret")));
        assert_eq!(info.answer(), Ok(()));
        assert_eq!(p2.answer(), Err(ErrorCode::ConversationError));
        assert_eq!(login.answer(), Err(ErrorCode::ConversationError));
        assert_eq!(radio.answer(), Err(ErrorCode::ConversationError));
    }

    #[test]
    fn broken_versus_refused() {
        assert!(matches!(
            classify("x", ErrorCode::AuthenticationError),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            classify("x", ErrorCode::NewAuthTokRequired),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            classify("x", ErrorCode::OpenError),
            Outcome::Broken(_)
        ));
    }
}
