#![no_main]
//! The passwd-file reader (Dovecot's format) and the user database built
//! from it, fed arbitrary text. Properties, beyond "no panic": every user
//! read has a valid name; every entry, written back as a line, reads back
//! as the same entry; and a name (compared without case) always finds its first entry, never
//! a later one with the same name.

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use yubin_auth::{PasswdFile, UserEntry, Users, check_user_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, _errors) = PasswdFile::parse(text);
    let (users, _errors) = Users::from_file(&file);
    let mut names = HashSet::new();
    for entry in file.users() {
        assert!(
            check_user_name(&entry.name).is_ok(),
            "read {:?}",
            entry.name
        );
        let first = names.insert(entry.name.to_ascii_lowercase());
        let line = entry.to_line();
        assert!(!line.contains('\n'), "a line with a line end: {line:?}");
        let again = UserEntry::parse(&line).expect("a written line reads back");
        assert_eq!(&again, entry, "{line:?}");
        if first {
            if let Some(user) = users.get(&entry.name.to_ascii_uppercase()) {
                assert_eq!(user.name, entry.name, "a name found another entry");
            }
        }
    }
});
