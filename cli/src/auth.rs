//! Re-authentication for sensitive calls.
//!
//! bmcd answers a sensitive call (power restore policy, manual fan
//! override, …) with `org.bmcd.Error.AuthenticationRequired` until the
//! calling connection has proven its user's password through
//! `org.bmcd.Session1.Authenticate`; a grant is by default good for one
//! sensitive call and belongs to that connection. [`crate::conn::Client`]
//! catches that error for every call, gets a password as decided here,
//! authenticates on the same connection and retries the call once.
//!
//! Where the password comes from ([`Policy::source`]):
//! - `--password-stdin`: the first line of stdin (the trailing `\n` or
//!   `\r\n` is removed, nothing else), read only when bmcd asks for it; one
//!   try. On a terminal it is read without echo. This wins over
//!   `--no-ask-password`, which is only about prompting.
//! - otherwise `--no-ask-password`, `--json`, or a stdin that is not a
//!   terminal: no prompt; the command fails with exit 3 and a message naming
//!   the option to use.
//! - otherwise, on a terminal: `Password for USER: ` on the terminal
//!   (rpassword reads `/dev/tty` without echo), up to [`MAX_TRIES`] tries,
//!   each failure said on stderr before the next prompt. SIGINT, SIGTERM,
//!   SIGHUP or SIGQUIT during the prompt restore the terminal's modes and
//!   then end bmcctl by that signal (status 128+n; see `PromptSignals`).
//!
//! A lockout ends the attempts at once. Everything that ends without a
//! grant exits 3, except a password bmcd could never accept (longer than
//! [`MAX_PASSWORD_BYTES`], not UTF-8, a NUL byte), which is refused here
//! with exit 2 without being sent.
//!
//! Passwords live in [`Password`] (a `Zeroizing<String>`, wiped on drop,
//! whose `Debug` prints no content) from
//! the moment they are read until the call has been made. They never go to
//! argv, the environment, logs, error texts or `Debug` output. Known copies
//! outside our control: zbus serialises the `&str` into its message buffer,
//! which is freed without being wiped; rpassword's own buffer may have been
//! reallocated while typing.

use std::cell::UnsafeCell;
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicI32, Ordering};

use zeroize::Zeroizing;

use crate::error::{names, CliError, Exit};

/// Longest password sent to bmcd, bytes (bmcd's default limit too).
pub const MAX_PASSWORD_BYTES: usize = 512;
/// Prompts on a terminal before giving up.
pub const MAX_TRIES: u32 = 3;

/// A password: wiped from memory when dropped, never shown by `Debug`.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Take ownership of `s` without copying it.
    fn new(s: String) -> Self {
        Password(Zeroizing::new(s))
    }
}

impl Deref for Password {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// How a password may be obtained; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub password_stdin: bool,
    pub no_ask_password: bool,
    pub json: bool,
    pub stdin_is_terminal: bool,
}

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ask on the terminal (up to [`MAX_TRIES`] times).
    Prompt,
    /// One line of stdin.
    Stdin { terminal: bool },
    /// Not allowed to ask: fail naming the way out.
    Refuse(Reason),
}

/// Why no password may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoAskPassword,
    Json,
    NoTerminal,
}

impl Policy {
    pub fn from_env(password_stdin: bool, no_ask_password: bool, json: bool) -> Self {
        Policy {
            password_stdin,
            no_ask_password,
            json,
            stdin_is_terminal: io::stdin().is_terminal(),
        }
    }

    pub fn source(&self) -> Source {
        if self.password_stdin {
            Source::Stdin {
                terminal: self.stdin_is_terminal,
            }
        } else if self.no_ask_password {
            Source::Refuse(Reason::NoAskPassword)
        } else if self.json {
            Source::Refuse(Reason::Json)
        } else if !self.stdin_is_terminal {
            Source::Refuse(Reason::NoTerminal)
        } else {
            Source::Prompt
        }
    }
}

fn required(message: impl Into<String>) -> CliError {
    CliError::daemon(bmcd_api::Error::AuthenticationRequired(message.into()))
}

/// The error when bmcd asks for a password and none may be asked for.
pub fn refusal(reason: Reason) -> CliError {
    required(match reason {
        Reason::NoAskPassword => {
            "authentication required, and --no-ask-password forbids prompting: pass --password-stdin"
        }
        Reason::Json => "authentication required: --json never prompts; pass --password-stdin",
        Reason::NoTerminal => {
            "authentication required: run on a terminal, or pass --password-stdin"
        }
    })
}

fn password_error(message: impl Into<String>) -> CliError {
    CliError::new(names::PASSWORD, message, Exit::Usage)
}

/// Refuse, without sending it, a password bmcd could never accept.
pub fn check(password: &str) -> Result<(), CliError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(password_error(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes; it was not sent"
        )));
    }
    if password.contains('\0') {
        return Err(password_error(
            "the password contains a NUL byte; it was not sent",
        ));
    }
    Ok(())
}

/// Read one line for `--password-stdin`: up to `\n` (exclusive; a `\r`
/// before it is removed too) or the end of input. Reads byte by byte, so
/// nothing after the line is consumed and no buffer of ours holds more than
/// the line; stops as soon as the line is too long.
pub fn read_line(input: &mut impl Read) -> Result<Password, CliError> {
    // Room for the limit plus a `\r`: never reallocated, so no stale copy.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PASSWORD_BYTES + 2));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut got_any = false;
    loop {
        match input.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) => {
                got_any = true;
                if byte[0] == b'\n' {
                    break;
                }
                if buf.len() > MAX_PASSWORD_BYTES {
                    return Err(password_error(format!(
                        "the password on stdin is longer than {MAX_PASSWORD_BYTES} bytes; it was not sent"
                    )));
                }
                buf.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(required(format!(
                    "cannot read the password from stdin: {e}"
                )))
            }
        }
    }
    if !got_any {
        return Err(required(
            "authentication required, but stdin is empty (--password-stdin)",
        ));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    // Moves the bytes into the String without copying them.
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(s) => {
            let s = Password::new(s);
            check(&s)?;
            Ok(s)
        }
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(password_error(
                "the password on stdin is not valid UTF-8; it was not sent",
            ))
        }
    }
}

/// Somewhere passwords come from.
pub trait Passwords {
    /// How many passwords may be asked for.
    fn tries(&self) -> u32;
    /// Whether [`Passwords::get`] shows the user's name.
    fn needs_user(&self) -> bool;
    /// The next password for `user`. An error ends the attempts.
    fn get(&mut self, user: &str) -> Result<Password, CliError>;
}

/// `Password for USER: ` on the terminal, no echo.
pub struct Prompt;

/// Read without echo from the terminal through rpassword.
fn from_tty(user: &str) -> Result<Password, CliError> {
    let read = {
        let _signals = PromptSignals::new();
        rpassword::prompt_password(format!("Password for {user}: "))
    };
    match read {
        Ok(p) => Ok(Password::new(p)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            // Ctrl-C with SIGINT ignored since bmcctl started (otherwise
            // the handler has ended bmcctl): the terminal is restored.
            end_line_on_tty();
            Err(required(
                "authentication required: interrupted; nothing was changed",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            end_line_on_tty();
            Err(required(
                "authentication required: no password given; nothing was changed",
            ))
        }
        Err(e) => Err(required(format!(
            "authentication required, but the terminal cannot be read ({e}): pass --password-stdin"
        ))),
    }
}

/// Finish the prompt's line after Ctrl-C or Ctrl-D (rpassword only does so
/// after Enter), so the next output starts on a line of its own.
fn end_line_on_tty() {
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = tty.write_all(b"\n");
    }
}

/// Signals that end bmcctl at the prompt once the terminal is restored.
const PROMPT_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The terminal's descriptor while a prompt runs, else -1; the handler
/// restores [`SAVED_TERMIOS`] on it.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);

/// The terminal's modes before the prompt. Written only while `TTY_FD` is
/// -1 (no handler reads it then), read only by the handler.
static SAVED_TERMIOS: SavedTermios = SavedTermios(UnsafeCell::new(MaybeUninit::uninit()));

struct SavedTermios(UnsafeCell<MaybeUninit<libc::termios>>);

// SAFETY: see SAVED_TERMIOS: writes and handler reads never overlap.
unsafe impl Sync for SavedTermios {}

/// While rpassword holds the terminal (echo, canonical mode and ISIG off),
/// SIGINT, SIGTERM, SIGHUP and SIGQUIT restore the terminal's modes as they
/// were before the prompt, discard unread input, end the prompt's line and
/// end bmcctl by the same signal (the shell reports 128+n). Signals that
/// were ignored when the prompt started stay ignored.
///
/// rpassword 7.5 restores the terminal only when it returns, so any fatal
/// signal would otherwise leave it without echo, and on Ctrl-C (a character
/// while ISIG is off) it raises SIGINT before restoring (rpassword issue
/// #109): that also ends here, with the terminal restored.
struct PromptSignals {
    /// The terminal, open while the handlers are installed.
    tty: Option<File>,
    /// Signals whose handler we installed, with the action they had.
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl PromptSignals {
    fn new() -> Self {
        let mut guard = PromptSignals {
            tty: None,
            previous: Vec::new(),
        };
        let Ok(tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/dev/tty")
        else {
            return guard; // rpassword will fail to open it too
        };
        let fd = tty.as_raw_fd();
        // SAFETY: TTY_FD is -1, so no handler reads SAVED_TERMIOS now;
        // tcgetattr fills the termios it points to.
        let saved = unsafe { libc::tcgetattr(fd, (*SAVED_TERMIOS.0.get()).as_mut_ptr()) == 0 };
        if !saved {
            return guard;
        }
        TTY_FD.store(fd, Ordering::SeqCst);
        guard.tty = Some(tty);
        for sig in PROMPT_SIGNALS {
            // SAFETY: plain C structs filled by sigaction; the handler only
            // makes async-signal-safe calls (see `on_prompt_signal`).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_prompt_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut new.sa_mask);
                for s in PROMPT_SIGNALS {
                    libc::sigaddset(&mut new.sa_mask, s);
                }
                if libc::sigaction(sig, &new, &mut old) == 0 {
                    guard.previous.push((sig, old));
                }
            }
        }
        guard
    }
}

impl Drop for PromptSignals {
    fn drop(&mut self) {
        for (sig, old) in self.previous.drain(..) {
            // SAFETY: puts back the action sigaction returned.
            unsafe {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
        TTY_FD.store(-1, Ordering::SeqCst);
        self.tty = None;
    }
}

/// The handler of [`PromptSignals`]: async-signal-safe calls only.
extern "C" fn on_prompt_signal(sig: libc::c_int) {
    let fd = TTY_FD.load(Ordering::SeqCst);
    // SAFETY: tcsetattr, tcflush, write, sigaction and raise are
    // async-signal-safe; SAVED_TERMIOS was filled before TTY_FD was set.
    unsafe {
        if fd >= 0 {
            libc::tcsetattr(fd, libc::TCSANOW, (*SAVED_TERMIOS.0.get()).as_ptr());
            libc::tcflush(fd, libc::TCIFLUSH);
            libc::write(fd, b"\n".as_ptr().cast(), 1);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        // Blocked until the handler returns, then fatal.
        libc::raise(sig);
    }
}

impl Passwords for Prompt {
    fn tries(&self) -> u32 {
        MAX_TRIES
    }
    fn needs_user(&self) -> bool {
        true
    }
    fn get(&mut self, user: &str) -> Result<Password, CliError> {
        let p = from_tty(user)?;
        check(&p)?;
        Ok(p)
    }
}

/// `--password-stdin`: one line of stdin, once.
pub struct StdinLine {
    pub terminal: bool,
}

impl Passwords for StdinLine {
    fn tries(&self) -> u32 {
        1
    }
    fn needs_user(&self) -> bool {
        self.terminal
    }
    fn get(&mut self, user: &str) -> Result<Password, CliError> {
        if self.terminal {
            // Typed by a person: do not echo it.
            let p = from_tty(user)?;
            check(&p)?;
            return Ok(p);
        }
        // Read through a duplicate of fd 0, not std's buffered stdin, so
        // no buffer outside ours keeps the line.
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| required(format!("cannot read the password from stdin: {e}")))?;
        read_line(&mut File::from(fd))
    }
}

/// The password reader for `policy`, or the refusal to ask.
pub fn passwords(policy: Policy) -> Result<Box<dyn Passwords>, CliError> {
    match policy.source() {
        Source::Prompt => Ok(Box::new(Prompt)),
        Source::Stdin { terminal } => Ok(Box::new(StdinLine { terminal })),
        Source::Refuse(r) => Err(refusal(r)),
    }
}

/// Replace control characters of a name shown in the prompt.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Get passwords from `source` and `authenticate` with them until one is
/// accepted, the tries are used up, or an error other than a wrong
/// password ends it. `user` gives the name for the prompt (called at most
/// once, and only when the source shows it); each failure that is followed
/// by another try is said on `say`.
pub fn reauthenticate(
    source: &mut dyn Passwords,
    user: &mut dyn FnMut() -> String,
    authenticate: &mut dyn FnMut(&str) -> Result<(), CliError>,
    say: &mut dyn Write,
) -> Result<(), CliError> {
    let tries = source.tries().max(1);
    let name = if source.needs_user() {
        printable(&user())
    } else {
        String::new()
    };
    let mut last: Option<CliError> = None;
    for attempt in 1..=tries {
        let more = attempt < tries;
        let password = source.get(&name)?;
        if password.is_empty() {
            if more {
                let _ = writeln!(say, "Authentication failed: empty password (not sent)");
            }
            last = Some(required("authentication required: no password given"));
            continue;
        }
        let result = authenticate(&password);
        drop(password);
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.as_daemon(),
                    Some(bmcd_api::Error::AuthenticationFailed(_))
                ) =>
            {
                if more {
                    let _ = writeln!(say, "Authentication failed: wrong password ({})", e.message);
                    let _ = say.flush();
                }
                last = Some(e);
            }
            Err(e) if matches!(e.as_daemon(), Some(bmcd_api::Error::LockedOut(_))) => {
                let mut e = e;
                e.message = format!("locked out: {}", e.message);
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some(mut e) = last else {
        return Err(required("authentication required"));
    };
    if matches!(
        e.as_daemon(),
        Some(bmcd_api::Error::AuthenticationFailed(_))
    ) {
        e.message = if tries > 1 {
            format!("wrong password, {tries} tries: {}", e.message)
        } else {
            format!("wrong password: {}", e.message)
        };
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Result<String, CliError> {
        let mut r = input;
        read_line(&mut r).map(|p| p.to_string())
    }

    #[test]
    fn stdin_line_strips_only_the_newline() {
        assert_eq!(read(b"secret\n").unwrap(), "secret");
        assert_eq!(read(b"secret\r\n").unwrap(), "secret");
        assert_eq!(read(b"secret").unwrap(), "secret");
        assert_eq!(read(b" sp ace \t\n").unwrap(), " sp ace \t");
        assert_eq!(read(b"a\r\r\n").unwrap(), "a\r");
        assert_eq!(read(b"first\nsecond\n").unwrap(), "first");
        assert_eq!(read("pässwörd\n".as_bytes()).unwrap(), "pässwörd");
        assert_eq!(read(b"\n").unwrap(), "");
    }

    #[test]
    fn stdin_line_reads_nothing_after_the_newline() {
        let data = b"pw\nrest";
        let mut r: &[u8] = data;
        assert_eq!(&*read_line(&mut r).unwrap(), "pw");
        assert_eq!(
            format!("{:?}", read_line(&mut &b"hunter2\n"[..])),
            "Ok(Password(..))"
        );
        assert_eq!(r, b"rest");
    }

    #[test]
    fn stdin_line_length_limit() {
        let max = "x".repeat(MAX_PASSWORD_BYTES);
        assert_eq!(read(format!("{max}\n").as_bytes()).unwrap(), max);
        assert_eq!(read(format!("{max}\r\n").as_bytes()).unwrap(), max);
        assert_eq!(read(max.as_bytes()).unwrap(), max);
        for long in [format!("{max}y\n"), format!("{max}y"), "z".repeat(10_000)] {
            let e = read(long.as_bytes()).unwrap_err();
            assert_eq!(e.exit, Exit::Usage);
            assert_eq!(e.name, names::PASSWORD);
            assert!(e.message.contains("longer than 512 bytes"), "{}", e.message);
            assert!(
                !e.message.contains("xxx"),
                "the password leaked: {}",
                e.message
            );
        }
    }

    #[test]
    fn stdin_line_rejects_what_bmcd_cannot_take() {
        let e = read(b"a\xffb\n").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("UTF-8"));
        let e = read(b"a\0b\n").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("NUL"));
        let e = read(b"").unwrap_err();
        assert_eq!(e.exit, Exit::Denied);
        assert!(matches!(
            e.as_daemon(),
            Some(bmcd_api::Error::AuthenticationRequired(_))
        ));
        assert!(e.message.contains("--password-stdin"), "{}", e.message);
    }

    #[test]
    fn check_limits_bytes_not_chars() {
        assert!(check(&"é".repeat(256)).is_ok()); // 512 bytes
        assert_eq!(check(&"é".repeat(257)).unwrap_err().exit, Exit::Usage);
    }

    const TTY: Policy = Policy {
        password_stdin: false,
        no_ask_password: false,
        json: false,
        stdin_is_terminal: true,
    };

    #[test]
    fn where_the_password_comes_from() {
        assert_eq!(TTY.source(), Source::Prompt);
        let p = |f: fn(&mut Policy)| {
            let mut p = TTY;
            f(&mut p);
            p.source()
        };
        assert_eq!(
            p(|p| p.stdin_is_terminal = false),
            Source::Refuse(Reason::NoTerminal)
        );
        assert_eq!(p(|p| p.json = true), Source::Refuse(Reason::Json));
        assert_eq!(
            p(|p| p.no_ask_password = true),
            Source::Refuse(Reason::NoAskPassword)
        );
        assert_eq!(
            p(|p| {
                p.password_stdin = true;
                p.stdin_is_terminal = false;
            }),
            Source::Stdin { terminal: false }
        );
        // --password-stdin is not prompting: it wins over the refusals.
        assert_eq!(
            p(|p| {
                p.password_stdin = true;
                p.json = true;
                p.no_ask_password = true;
            }),
            Source::Stdin { terminal: true }
        );
    }

    #[test]
    fn refusals_name_the_option_to_use() {
        for r in [Reason::NoAskPassword, Reason::Json, Reason::NoTerminal] {
            let e = refusal(r);
            assert_eq!(e.exit, Exit::Denied);
            assert_eq!(e.name, "org.bmcd.Error.AuthenticationRequired");
            assert!(e.message.contains("--password-stdin"), "{}", e.message);
        }
        assert_eq!(
            refusal(Reason::NoTerminal).line(),
            "authentication required: run on a terminal, or pass --password-stdin \
             (org.bmcd.Error.AuthenticationRequired)"
        );
        assert!(refusal(Reason::Json).message.contains("--json"));
        assert!(refusal(Reason::NoAskPassword)
            .message
            .contains("--no-ask-password"));
        let none = Policy {
            stdin_is_terminal: false,
            ..TTY
        };
        assert_eq!(passwords(none).err(), Some(refusal(Reason::NoTerminal)));
    }

    /// Passwords from a list; counts the prompts.
    struct Script {
        answers: Vec<Result<&'static str, CliError>>,
        tries: u32,
        asked: u32,
        users: Vec<String>,
        shows_user: bool,
    }

    impl Script {
        fn new(tries: u32, answers: Vec<Result<&'static str, CliError>>) -> Self {
            Script {
                answers,
                tries,
                asked: 0,
                users: Vec::new(),
                shows_user: true,
            }
        }
    }

    impl Passwords for Script {
        fn tries(&self) -> u32 {
            self.tries
        }
        fn needs_user(&self) -> bool {
            self.shows_user
        }
        fn get(&mut self, user: &str) -> Result<Password, CliError> {
            self.users.push(user.to_owned());
            let a = self.answers.get(self.asked as usize).cloned();
            self.asked += 1;
            a.unwrap_or(Ok("")).map(|s| Password::new(s.to_owned()))
        }
    }

    fn failed(msg: &str) -> CliError {
        CliError::daemon(bmcd_api::Error::AuthenticationFailed(msg.into()))
    }

    /// Run the loop against a fake daemon that accepts `good` and locks out
    /// after `lock_after` failures.
    fn run(script: &mut Script, good: &str, lock_after: u32) -> (Result<(), CliError>, String) {
        let mut said = Vec::new();
        let mut failures = 0;
        let mut sent = Vec::new();
        let r = reauthenticate(
            script,
            &mut || "root\x1b[2J".to_owned(),
            &mut |pw| {
                sent.push(pw.to_owned());
                if pw == good {
                    return Ok(());
                }
                failures += 1;
                if failures >= lock_after {
                    Err(CliError::daemon(bmcd_api::Error::LockedOut(
                        "uid 0 is locked out for 300 s".into(),
                    )))
                } else {
                    Err(failed(
                        "authentication failed for root; 4 more failures will lock uid 0 out",
                    ))
                }
            },
            &mut said,
        );
        let said = String::from_utf8(said).unwrap();
        for s in &sent {
            assert!(
                s.is_empty() || !said.contains(s.as_str()),
                "a password was echoed: {said}"
            );
        }
        (r, said)
    }

    #[test]
    fn right_password_first_time() {
        let mut s = Script::new(3, vec![Ok("secret")]);
        let (r, said) = run(&mut s, "secret", 99);
        assert!(r.is_ok());
        assert_eq!(s.asked, 1);
        assert!(said.is_empty());
        assert_eq!(s.users, ["root?[2J"], "control characters are not printed");
    }

    #[test]
    fn each_failure_is_said_before_the_next_prompt() {
        let mut s = Script::new(3, vec![Ok("nope"), Ok(""), Ok("secret")]);
        let (r, said) = run(&mut s, "secret", 99);
        assert!(r.is_ok());
        assert_eq!(s.asked, 3);
        assert_eq!(
            said,
            "Authentication failed: wrong password (authentication failed for root; \
             4 more failures will lock uid 0 out)\n\
             Authentication failed: empty password (not sent)\n"
        );
    }

    #[test]
    fn three_wrong_passwords_exit_3() {
        let mut s = Script::new(
            3,
            vec![Ok("pw-one"), Ok("pw-two"), Ok("pw-three"), Ok("secret")],
        );
        let (r, said) = run(&mut s, "secret", 99);
        let e = r.unwrap_err();
        assert_eq!(s.asked, 3, "never more than three prompts");
        assert_eq!(e.exit, Exit::Denied);
        assert!(matches!(
            e.as_daemon(),
            Some(bmcd_api::Error::AuthenticationFailed(_))
        ));
        assert_eq!(
            e.line(),
            "wrong password, 3 tries: authentication failed for root; 4 more failures \
             will lock uid 0 out (org.bmcd.Error.AuthenticationFailed)"
        );
        // The last failure is the error, not a line before another prompt.
        assert_eq!(said.lines().count(), 2);
    }

    #[test]
    fn lockout_ends_at_once() {
        let mut s = Script::new(3, vec![Ok("pw-one"), Ok("pw-two"), Ok("secret")]);
        let (r, _) = run(&mut s, "secret", 2);
        let e = r.unwrap_err();
        assert_eq!(s.asked, 2);
        assert_eq!(e.exit, Exit::Denied);
        assert_eq!(
            e.line(),
            "locked out: uid 0 is locked out for 300 s (org.bmcd.Error.LockedOut)"
        );
    }

    #[test]
    fn a_local_refusal_ends_at_once_without_sending() {
        let too_long = password_error("the password is longer than 512 bytes; it was not sent");
        let mut s = Script::new(3, vec![Err(too_long), Ok("secret")]);
        let (r, _) = run(&mut s, "secret", 99);
        assert_eq!(r.unwrap_err().exit, Exit::Usage);
        assert_eq!(s.asked, 1);
    }

    #[test]
    fn one_try_from_stdin() {
        let mut s = Script::new(1, vec![Ok("nope"), Ok("secret")]);
        let (r, said) = run(&mut s, "secret", 99);
        let e = r.unwrap_err();
        assert_eq!(s.asked, 1);
        assert!(said.is_empty());
        assert!(e.message.starts_with("wrong password: "), "{}", e.message);
        let mut s = Script::new(1, vec![Ok("")]);
        let e = run(&mut s, "secret", 99).0.unwrap_err();
        assert_eq!(e.exit, Exit::Denied);
        assert!(matches!(
            e.as_daemon(),
            Some(bmcd_api::Error::AuthenticationRequired(_))
        ));
    }

    #[test]
    fn other_errors_pass_through() {
        let mut s = Script::new(3, vec![Ok("x")]);
        let mut said = Vec::new();
        let r = reauthenticate(
            &mut s,
            &mut || "root".into(),
            &mut |_| {
                Err(CliError::new(
                    "org.bmcd.Error.Unavailable",
                    "PAM failed",
                    Exit::Failure,
                ))
            },
            &mut said,
        );
        assert_eq!(r.unwrap_err().exit, Exit::Failure);
        assert_eq!(s.asked, 1);
    }

    #[test]
    fn the_user_is_looked_up_once_and_only_when_shown() {
        assert!(!StdinLine { terminal: false }.needs_user());
        assert!(StdinLine { terminal: true }.needs_user());
        for (shows, want) in [(true, 1), (false, 0)] {
            let mut calls = 0;
            let mut s = Script::new(3, vec![Ok("a"), Ok("b"), Ok("secret")]);
            s.shows_user = shows;
            let r = reauthenticate(
                &mut s,
                &mut || {
                    calls += 1;
                    "root".into()
                },
                &mut |pw| {
                    if pw == "secret" {
                        Ok(())
                    } else {
                        Err(failed("no"))
                    }
                },
                &mut Vec::new(),
            );
            assert!(r.is_ok());
            assert_eq!(calls, want);
        }
    }
}
