//! `bmcctl whoami`: who bmcd thinks the caller is.

use super::Ctx;
use crate::error::CliError;
use crate::output::{FieldSpec, Output, Record, Value};

pub const UID: FieldSpec = FieldSpec::new("Uid", "Uid");
pub const USER: FieldSpec = FieldSpec::new("User", "User");
pub const ROLE: FieldSpec = FieldSpec::new("Role", "Role");

pub fn run(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let (uid, user, role) = client.who_am_i()?;
    Ok(Output::new().record(None, record(uid, &user, &role)))
}

fn record(uid: u32, user: &str, role: &str) -> Record {
    Record::new()
        .field(UID, Value::Int(i64::from(uid)))
        .field(USER, Value::text(user))
        .field(ROLE, Value::text(role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_console, render_json};

    #[test]
    fn renders_uid_user_and_role() {
        let out = Output::new().record(None, record(1000, "alice", "Operator"));
        assert_eq!(
            render_console(&out, false),
            "Uid:   1000\nUser:  alice\nRole:  Operator\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["Uid"], 1000);
        assert_eq!(v["User"], "alice");
        assert_eq!(v["Role"], "Operator");
        // A uid without a passwd entry has an empty name: `-` and "".
        let out = Output::new().record(None, record(4242, "", "ReadOnly"));
        assert!(render_console(&out, false).contains("User:  -\n"));
    }
}
