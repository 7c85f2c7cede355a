#![no_main]
//! The SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256), server
//! side, fed a mechanism and arbitrary responses. Properties, beyond "no
//! panic": a success names a user whose password the client actually sent
//! (PLAIN and LOGIN); CRAM-MD5 and SCRAM, whose proofs the fuzzer cannot
//! compute, never succeed; after a success or a failure, every further
//! step fails.

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use yubin_auth::sasl::{Exchange, MECHANISMS, Step};
use yubin_auth::{PasswdFile, Users};

/// Users with every kind of stored secret the mechanisms use: PLAIN for
/// PLAIN, LOGIN and CRAM-MD5, and stored SCRAM keys (no PBKDF2 per try).
static USERS: LazyLock<Users> = LazyLock::new(|| {
    let (file, errors) = PasswdFile::parse(
        "alice:{PLAIN}alice-pw\n\
         scram:{SCRAM-SHA-256}4096,fWMylOXMmwj7lmzwqIDREQ==,YmELRdm95fV06v/IWdVvXY+cKzRYZVCAsZfTwIWXhgY=,8AO/RPkktE+3KiXIqQv4eoHFs9fqePVXEWhlHtqHrgc=\n",
    );
    assert!(errors.is_empty());
    let (mut users, errors) = Users::from_file(&file);
    assert!(errors.is_empty());
    users.set_secret(b"fuzz secret");
    users
});

/// Splits the input into responses at `\0\0` (a pair of NULs, rare
/// inside PLAIN's own NUL-separated fields).
fn responses(input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(at) = rest.windows(2).position(|w| w == b"\0\0") {
        out.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    out.push(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let mechanism = MECHANISMS[usize::from(flags) % MECHANISMS.len()];
    let mut responses = responses(input).into_iter();
    let initial = if flags & 0x80 != 0 {
        responses.next()
    } else {
        None
    };
    let Some((mut exchange, mut step)) =
        Exchange::start(mechanism, initial, &USERS, "fuzz.example")
    else {
        panic!("{mechanism} is implemented");
    };
    let mut finished = false;
    loop {
        match &step {
            Step::Success(user) => {
                assert!(!finished, "a step after the end succeeded");
                assert!(
                    matches!(mechanism, "PLAIN" | "LOGIN"),
                    "{mechanism} succeeded on a made-up proof"
                );
                assert_eq!(user.name(), "alice");
                assert!(
                    input.windows(8).any(|w| w == b"alice-pw"),
                    "success without the password"
                );
                finished = true;
            }
            Step::Failure => finished = true,
            Step::Challenge(_) => assert!(!finished, "a challenge after the end"),
        }
        let Some(response) = responses.next() else {
            break;
        };
        step = exchange.step(response, &USERS);
        if finished {
            assert_eq!(step, Step::Failure, "a step after the end did not fail");
        }
    }
});
