//! The login choice, row by row, and every exchange played against
//! yubin's server-side SASL mechanisms (yubin-auth), a party this module
//! does not share code with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use yubin_auth::passwd::PasswdFile;
use yubin_auth::sasl::{Exchange, Step};
use yubin_auth::users::Users;

use super::*;
use crate::client::Limits;

fn status(text: &str) -> Status {
    Status::parse(text.as_bytes()).unwrap()
}

fn capabilities(lines: &[&str]) -> Capabilities {
    let mut pop = Connection::new(Limits::default());
    pop.receive(b"+OK greeting\r\n");
    assert!(matches!(pop.next_event(), Ok(Some(Event::Greeting(_)))));
    pop.capa().unwrap();
    let mut reply = b"+OK\r\n".to_vec();
    for line in lines {
        reply.extend_from_slice(line.as_bytes());
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b".\r\n");
    pop.receive(&reply);
    match pop.next_event() {
        Ok(Some(Event::Capabilities(caps))) => caps,
        other => panic!("{other:?}"),
    }
}

const STAMP_GREETING: &str = "+OK ready <1896.697170952@dbc.mtview.ca.us>";

fn pick(
    method: AuthMethod,
    caps: &[&str],
    capa_known: bool,
    tls: bool,
    greeting: &str,
) -> Result<AuthMethod, NoMethod> {
    let capabilities = capabilities(caps);
    let greeting = status(greeting);
    choose(
        method,
        &Offer {
            capabilities: &capabilities,
            capa_known,
            tls,
            greeting: &greeting,
        },
    )
}

#[test]
fn the_choice_follows_the_documented_order() {
    use AuthMethod::*;
    let rows: &[(&[&str], bool, bool, &str, AuthMethod)] = &[
        // Over TLS: USER first, then SASL in order, APOP last.
        (
            &["USER", "SASL PLAIN SCRAM-SHA-256"],
            true,
            true,
            "+OK",
            User,
        ),
        (&["SASL LOGIN PLAIN"], true, true, "+OK", Plain),
        (&["SASL CRAM-MD5 LOGIN"], true, true, "+OK", Login),
        (
            &["SASL CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"],
            true,
            true,
            "+OK",
            ScramSha256,
        ),
        (&["SASL CRAM-MD5 SCRAM-SHA-1"], true, true, "+OK", ScramSha1),
        (&["SASL CRAM-MD5"], true, true, STAMP_GREETING, CramMd5),
        (&["TOP"], true, true, STAMP_GREETING, Apop),
        // No CAPA at all: USER is RFC 1939's.
        (&[], false, true, STAMP_GREETING, User),
        // CAPA lists no way in: USER anyway.
        (&["TOP"], true, true, "+OK", User),
        // In clear: only what never sends the password.
        (
            &["USER", "SASL PLAIN CRAM-MD5"],
            true,
            false,
            "+OK",
            CramMd5,
        ),
        (
            &["SASL SCRAM-SHA-1 SCRAM-SHA-256"],
            true,
            false,
            "+OK",
            ScramSha256,
        ),
    ];
    for &(caps, capa_known, tls, greeting, expected) in rows {
        assert_eq!(
            pick(Auto, caps, capa_known, tls, greeting),
            Ok(expected),
            "{caps:?} capa_known={capa_known} tls={tls}"
        );
    }
}

#[test]
fn in_clear_no_password_is_sent_unless_a_method_is_forced() {
    let refused = pick(
        AuthMethod::Auto,
        &["USER", "SASL PLAIN LOGIN"],
        true,
        false,
        STAMP_GREETING,
    );
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(pick(AuthMethod::Auto, &[], false, false, "+OK"), refused);
    for forced in [AuthMethod::User, AuthMethod::Plain, AuthMethod::Login] {
        assert_eq!(pick(forced, &["USER"], true, false, "+OK"), Ok(forced));
    }
}

#[test]
fn apop_needs_tls_and_a_timestamp_even_when_forced() {
    let apop = |tls, greeting| pick(AuthMethod::Apop, &[], false, tls, greeting);
    assert_eq!(apop(true, STAMP_GREETING), Ok(AuthMethod::Apop));
    assert!(apop(false, STAMP_GREETING).unwrap_err().0.contains("TLS"));
    assert!(apop(true, "+OK ready").unwrap_err().0.contains("timestamp"));
    assert!(apop(true, "+OK ready <no-at-sign>").is_err());
}

#[test]
fn every_name_parses_back() {
    use AuthMethod::*;
    for method in [
        Auto,
        User,
        Apop,
        Plain,
        Login,
        CramMd5,
        ScramSha1,
        ScramSha256,
    ] {
        assert_eq!(AuthMethod::parse(method.name()), Some(method));
        assert_eq!(
            AuthMethod::parse(&method.name().to_uppercase()),
            Some(method)
        );
    }
    assert_eq!(AuthMethod::parse("gssapi"), None);
    assert!(User.sends_password() && Plain.sends_password() && Login.sends_password());
    assert!(!Apop.sends_password() && !CramMd5.sends_password() && !ScramSha256.sends_password());
}

/// A passwd-file with alice, whose password `secret` is stored in clear
/// so that every mechanism works.
fn users() -> Users {
    let (file, errors) = PasswdFile::parse("alice:{PLAIN}secret\n");
    assert!(errors.is_empty(), "{errors:?}");
    let (users, errors) = Users::from_file(&file);
    assert!(errors.is_empty(), "{errors:?}");
    users
}

/// Takes the one command line `pop` queued.
fn sent(pop: &mut Connection) -> String {
    let line = String::from_utf8(pop.output().to_vec()).unwrap();
    pop.clear_output();
    line.strip_suffix("\r\n").unwrap().to_owned()
}

fn decode(text: &str) -> Vec<u8> {
    if text == "=" {
        return Vec::new();
    }
    BASE64.decode(text).unwrap()
}

/// Plays a SASL login by `method` against the server side, returning the
/// outcome as the client saw it.
fn sasl_against_server(
    method: AuthMethod,
    user: &str,
    password: &str,
) -> Result<Progress, LoginError> {
    let users = users();
    let mut pop = Connection::new(Limits::default());
    let mut login = Login::begin(method, user, password, None, &mut pop)?;
    let auth = sent(&mut pop);
    let mut words = auth.split(' ');
    assert_eq!(words.next(), Some("AUTH"));
    let mechanism = words.next().unwrap();
    let initial = words.next().map(decode);
    let (mut exchange, mut step) =
        Exchange::start(mechanism, initial.as_deref(), &users, "pop.example").unwrap();
    loop {
        let event = match step {
            Step::Challenge(data) => Event::Challenge(data),
            Step::Success(who) => {
                assert_eq!(who.name(), "alice");
                Event::Status(status("+OK logged in"))
            }
            Step::Failure => Event::Status(status("-ERR [AUTH] no")),
        };
        let progress = login.on_event(event, &mut pop)?;
        if progress != Progress::Continue {
            return Ok(progress);
        }
        let response = sent(&mut pop);
        step = exchange.step(&decode(&response), &users);
    }
}

#[test]
fn every_sasl_mechanism_logs_in_against_the_server_side() {
    use AuthMethod::*;
    for method in [Plain, Login, CramMd5, ScramSha1, ScramSha256] {
        assert_eq!(
            sasl_against_server(method, "alice", "secret"),
            Ok(Progress::Done),
            "{method:?}"
        );
    }
}

#[test]
fn a_wrong_password_is_refused_by_every_mechanism() {
    use AuthMethod::*;
    for method in [Plain, Login, CramMd5] {
        match sasl_against_server(method, "alice", "wrong") {
            Err(LoginError::Refused(status)) => assert!(!status.ok),
            other => panic!("{method:?}: {other:?}"),
        }
    }
    // SCRAM: the server fails the client's proof.
    for method in [ScramSha1, ScramSha256] {
        assert!(matches!(
            sasl_against_server(method, "alice", "wrong"),
            Err(LoginError::Refused(_))
        ));
    }
}

#[test]
fn a_server_that_fails_scrams_proof_is_cancelled() {
    let mut pop = Connection::new(Limits::default());
    let mut login =
        Login::begin(AuthMethod::ScramSha256, "alice", "secret", None, &mut pop).unwrap();
    pop.clear_output();
    // A server-first with a nonce that does not extend ours.
    let progress = login.on_event(
        Event::Challenge(b"r=other,s=c2FsdA==,i=4096".to_vec()),
        &mut pop,
    );
    assert!(matches!(progress, Ok(Progress::Cancel(_))), "{progress:?}");
    assert_eq!(pop.output(), b"*\r\n");
    assert_eq!(
        login.on_event(Event::Status(status("-ERR cancelled")), &mut pop),
        Err(LoginError::Over)
    );
}

#[test]
fn user_and_pass_and_apop() {
    let mut pop = Connection::new(Limits::default());
    let mut login = Login::begin(AuthMethod::User, "alice", "secret", None, &mut pop).unwrap();
    assert_eq!(sent(&mut pop), "USER alice");
    assert_eq!(login.awaiting(), "USER");
    assert_eq!(
        login.on_event(Event::Status(status("+OK")), &mut pop),
        Ok(Progress::Continue)
    );
    assert_eq!(sent(&mut pop), "PASS secret");
    let refused = login.on_event(Event::Status(status("-ERR [IN-USE] busy")), &mut pop);
    assert!(matches!(refused, Err(LoginError::Refused(s)) if s.in_use()));

    // A refused USER ends the login before the password is sent.
    let mut login = Login::begin(AuthMethod::User, "alice", "secret", None, &mut pop).unwrap();
    pop.clear_output();
    assert!(matches!(
        login.on_event(Event::Status(status("-ERR no")), &mut pop),
        Err(LoginError::Refused(_))
    ));
    assert!(
        pop.output().is_empty(),
        "the password went out after a refused USER"
    );

    // RFC 1939's own example.
    let stamp = "<1896.697170952@dbc.mtview.ca.us>";
    let mut login =
        Login::begin(AuthMethod::Apop, "mrose", "tanstaaf", Some(stamp), &mut pop).unwrap();
    assert_eq!(
        sent(&mut pop),
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb"
    );
    assert_eq!(
        login.on_event(Event::Status(status("+OK")), &mut pop),
        Ok(Progress::Done)
    );
    assert!(matches!(
        Login::begin(AuthMethod::Apop, "mrose", "x", None, &mut pop),
        Err(LoginError::NoMethod(_))
    ));
}

#[test]
fn a_long_initial_response_waits_for_an_empty_challenge() {
    let mut pop = Connection::new(Limits::default());
    let long_user = "u".repeat(200);
    let mut login = Login::begin(AuthMethod::Plain, &long_user, "secret", None, &mut pop).unwrap();
    assert_eq!(sent(&mut pop), "AUTH PLAIN");
    assert_eq!(
        login.on_event(Event::Challenge(Vec::new()), &mut pop),
        Ok(Progress::Continue)
    );
    let response = decode(&sent(&mut pop));
    assert_eq!(response, format!("\0{long_user}\0secret").into_bytes());

    // A non-empty challenge there is not SASL: cancelled.
    let mut login = Login::begin(AuthMethod::Plain, &long_user, "secret", None, &mut pop).unwrap();
    pop.clear_output();
    assert!(matches!(
        login.on_event(Event::Challenge(b"what?".to_vec()), &mut pop),
        Ok(Progress::Cancel(_))
    ));
    assert_eq!(sent(&mut pop), "*");
}

#[test]
fn replies_no_step_expects_end_the_login() {
    let mut pop = Connection::new(Limits::default());
    let mut login = Login::begin(AuthMethod::User, "alice", "secret", None, &mut pop).unwrap();
    assert!(matches!(
        login.on_event(Event::Challenge(b"x".to_vec()), &mut pop),
        Err(LoginError::Unexpected(_))
    ));
    let mut login = Login::begin(AuthMethod::CramMd5, "alice", "secret", None, &mut pop).unwrap();
    assert!(matches!(
        login.on_event(Event::ContentEnd, &mut pop),
        Err(LoginError::Unexpected(Event::ContentEnd))
    ));
    assert!(matches!(
        Login::begin(AuthMethod::User, "al\r\nice", "secret", None, &mut pop),
        Err(LoginError::Request(RequestError::BadArgument))
    ));
}
