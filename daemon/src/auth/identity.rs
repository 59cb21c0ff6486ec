//! Who a uid is: its role (from its groups) and its user name, through the
//! system's user and group databases (NSS: `getpwuid_r`, `getgrnam_r`,
//! `getgrouplist`, through `nix`).
//!
//! The uid and groups themselves always come from the bus driver
//! (`GetConnectionCredentials`), never from the caller.

use std::ffi::CString;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use super::policy::Role;

/// The gids of the two role groups; `None` when the group does not exist on
/// this system (then it matches nobody).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Groups {
    pub admin: Option<u32>,
    pub operator: Option<u32>,
}

impl Groups {
    /// Resolve the configured group names; a missing group is logged once,
    /// here, and matches nobody afterwards.
    pub fn resolve(admin: &str, operator: &str) -> Groups {
        let find = |name: &str, what: &str| {
            let gid = group_id(name);
            if gid.is_none() {
                log::warn!(
                    target: "auth",
                    "{what} group '{name}' does not exist: nobody gets that role through a group"
                );
            }
            gid
        };
        Groups {
            admin: find(admin, "admin"),
            operator: find(operator, "operator"),
        }
    }

    /// The role of a caller with `uid` and the supplementary and primary
    /// `gids` the bus driver reported.
    pub fn role_of(&self, uid: u32, gids: &[u32]) -> Role {
        let member = |g: Option<u32>| g.is_some_and(|g| gids.contains(&g));
        if uid == 0 || member(self.admin) {
            Role::Administrator
        } else if member(self.operator) {
            Role::Operator
        } else {
            Role::ReadOnly
        }
    }
}

/// The user name of `uid`, or `None` if it has no passwd entry (or a name
/// that is not UTF-8: it is handed to PAM, which must see the exact name).
pub fn user_name(uid: u32) -> Option<String> {
    let user = User::from_uid(Uid::from_raw(uid)).ok()??;
    // nix converts lossily; a replaced byte would name someone else.
    (!user.name.contains(char::REPLACEMENT_CHARACTER)).then_some(user.name)
}

/// The gid of group `name`, or `None` if there is no such group.
pub fn group_id(name: &str) -> Option<u32> {
    Some(Group::from_name(name).ok()??.gid.as_raw())
}

/// The groups of `uid` according to the group database (primary group
/// included). Only a fallback for buses that do not report `UnixGroupIDs`:
/// the process's own groups, which the bus reports, are what counts.
pub fn database_groups(uid: u32) -> Vec<u32> {
    let Some(user) = User::from_uid(Uid::from_raw(uid)).ok().flatten() else {
        return Vec::new();
    };
    let Ok(name) = CString::new(user.name) else {
        return Vec::new();
    };
    match getgrouplist(&name, user.gid) {
        Ok(groups) => groups.into_iter().map(Gid::as_raw).collect(),
        Err(_) => vec![user.gid.as_raw()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_groups() {
        let g = Groups {
            admin: Some(1001),
            operator: Some(1002),
        };
        assert_eq!(g.role_of(0, &[]), Role::Administrator);
        assert_eq!(g.role_of(1000, &[100, 1001]), Role::Administrator);
        assert_eq!(g.role_of(1000, &[1002]), Role::Operator);
        assert_eq!(g.role_of(1000, &[1001, 1002]), Role::Administrator);
        assert_eq!(g.role_of(1000, &[100]), Role::ReadOnly);
        assert_eq!(g.role_of(65534, &[]), Role::ReadOnly);
    }

    #[test]
    fn missing_groups_match_nobody() {
        let g = Groups::default();
        assert_eq!(g.role_of(1000, &[0, 1, 2, 65534]), Role::ReadOnly);
        assert_eq!(g.role_of(0, &[]), Role::Administrator);
    }

    #[test]
    fn system_database() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-bmcd-test"), None);
        assert_eq!(group_id("nul\0byte"), None);
        assert!(database_groups(0).contains(&0));
        let g = Groups::resolve("root", "no-such-group-bmcd-test");
        assert_eq!(g.admin, Some(0));
        assert_eq!(g.operator, None);
    }
}
