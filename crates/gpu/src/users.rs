//! Resolves a process's owner name: real UID from `/proc/<pid>/status`, name from `/etc/passwd`.
//!
//! NVML only gives PIDs; `imagelab gpus` shows whose job sits on a card so a person knows whom
//! to ask. Anything that cannot be read (process gone, other PID namespace) becomes "unknown".

use std::collections::HashMap;
use std::fs;

use crate::sample::UNKNOWN_USER;

/// UID → login name, read once per snapshot so a process list does not re-read `/etc/passwd`.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    names: HashMap<u32, String>,
}

impl UserTable {
    /// Reads `/etc/passwd`; an unreadable file gives an empty table (every user "unknown").
    pub fn load() -> Self {
        let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
        Self::from_passwd(&text)
    }

    /// Parses passwd-format text (`name:x:uid:gid:...`), skipping malformed lines.
    pub fn from_passwd(text: &str) -> Self {
        let mut names = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split(':');
            let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Ok(uid) = uid.trim().parse::<u32>() {
                // The first entry wins, as getpwuid does.
                names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
        UserTable { names }
    }

    /// The login name for `uid`, or the number itself when it has no passwd entry.
    pub fn name_of_uid(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The owner of `pid`, or [`UNKNOWN_USER`] when `/proc/<pid>/status` cannot be read.
    pub fn user_of_pid(&self, pid: u32) -> String {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| real_uid_from_status(&status))
            .map(|uid| self.name_of_uid(uid))
            .unwrap_or_else(|| UNKNOWN_USER.to_string())
    }
}

/// The real UID (first number on the `Uid:` line) of a `/proc/<pid>/status` text.
pub(crate) fn real_uid_from_status(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_status() {
        let table = UserTable::from_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken line\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        assert_eq!(table.name_of_uid(1000), "alice");
        assert_eq!(table.name_of_uid(0), "root");
        assert_eq!(table.name_of_uid(4242), "4242");
        let status = "Name:\tpython\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n";
        assert_eq!(real_uid_from_status(status), Some(1000));
        assert_eq!(real_uid_from_status("Name: x\n"), None);
    }

    #[test]
    fn own_process_resolves_and_missing_pid_is_unknown() {
        let table = UserTable::load();
        assert_ne!(table.user_of_pid(std::process::id()), UNKNOWN_USER);
        // PIDs are capped well below u32::MAX (pid_max ≤ 2^22), so this one never exists.
        assert_eq!(table.user_of_pid(u32::MAX), UNKNOWN_USER);
    }
}
