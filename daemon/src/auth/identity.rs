//! Who a uid is: its role (from its groups) and its user name, through the
//! system's user and group databases (NSS: `getpwuid_r`, `getgrnam_r`,
//! `getgrouplist`).
//!
//! The uid and groups themselves always come from the bus driver
//! (`GetConnectionCredentials`), never from the caller.

use std::ffi::{CStr, CString};

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

/// Upper bound for NSS buffers; entries larger than this are refused.
const MAX_BUF: usize = 1 << 20;

/// Call a `get*_r` function with a growing buffer until it fits.
/// `f(buf, len)` returns the function's error number (0 = success) and
/// whether an entry was found.
fn with_buffer<T>(mut f: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>)) -> Option<T> {
    let mut len = 1024;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; len];
        match f(&mut buf) {
            (0, found) => return found,
            (libc::ERANGE, _) if len < MAX_BUF => len *= 4,
            _ => return None,
        }
    }
}

/// The user name of `uid`, or `None` if it has no passwd entry.
pub fn user_name(uid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value of this plain C
        // struct; getpwuid_r fills it and points its strings into `buf`,
        // which outlives every use below; `result` is either null or
        // points to `pw`.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc != 0 || result.is_null() || pw.pw_name.is_null() {
                return (rc, None);
            }
            let name = CStr::from_ptr(pw.pw_name).to_str().ok().map(str::to_owned);
            (0, name)
        }
    })
}

/// The primary gid of user `name`, or `None` if it has no passwd entry.
fn primary_gid(name: &CStr) -> Option<u32> {
    with_buffer(|buf| {
        // SAFETY: as in `user_name`.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if rc != 0 || result.is_null() {
                return (rc, None);
            }
            (0, Some(pw.pw_gid))
        }
    })
}

/// The gid of group `name`, or `None` if there is no such group.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value of this plain C struct;
        // getgrnam_r fills it with pointers into `buf`; `result` is either
        // null or points to `gr`.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if rc != 0 || result.is_null() {
                return (rc, None);
            }
            (0, Some(gr.gr_gid))
        }
    })
}

/// The groups of `uid` according to the group database (primary group
/// included). Only a fallback for buses that do not report `UnixGroupIDs`:
/// the process's own groups, which the bus reports, are what counts.
pub fn database_groups(uid: u32) -> Vec<u32> {
    let Some(name) = user_name(uid).and_then(|n| CString::new(n).ok()) else {
        return Vec::new();
    };
    let Some(gid) = primary_gid(&name) else {
        return Vec::new();
    };
    let mut n: libc::c_int = 64;
    loop {
        let cap = usize::try_from(n).unwrap_or(0);
        let mut groups: Vec<libc::gid_t> = vec![0; cap];
        let mut count = n;
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes
        // at most that many and stores the number it needs in `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(usize::try_from(count).unwrap_or(0));
            return groups;
        }
        if count <= n || count > 65_536 {
            return vec![gid];
        }
        n = count;
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
