//! Tokens made by aws-sdk-dsql's own generator, verified (or refused) by `auth::TokenVerifier`.
//! Signing is local: no network, no AWS account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config};
use tdsql_dsql_local::auth::{Action, KeyPair, TokenRejection, TokenVerifier};

const HOST: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
const AKID: &str = "AKIDLOCALGATEWAY";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLOCALSECRET";
const SESSION_TOKEN: &str =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+session/token+with=odd/chars==";

async fn sdk_config(region: &str, akid: &str, secret: &str, session: Option<&str>) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(akid, secret, session.map(str::to_owned), None, "static"))
        .load()
        .await
}

struct Request<'a> {
    host: &'a str,
    region: &'a str,
    akid: &'a str,
    secret: &'a str,
    session: Option<&'a str>,
    action: Action,
    expires_in: u64,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Self {
            host: HOST,
            region: "us-east-1",
            akid: AKID,
            secret: SECRET,
            session: None,
            action: Action::DbConnect,
            expires_in: 900,
        }
    }
}

async fn sdk_token(request: Request<'_>) -> String {
    let config = sdk_config(request.region, request.akid, request.secret, request.session).await;
    let generator = AuthTokenGenerator::new(
        Config::builder()
            .hostname(request.host)
            .expires_in(request.expires_in)
            .build()
            .expect("token config"),
    );
    let token = match request.action {
        Action::DbConnect => generator.db_connect_auth_token(&config).await,
        Action::DbConnectAdmin => generator.db_connect_admin_auth_token(&config).await,
    };
    token.expect("the SDK signs locally").as_str().to_owned()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(
        "us-east-1",
        vec!["localhost".to_owned(), HOST.to_uppercase(), "127.0.0.1".to_owned()],
        KeyPair::new(AKID, SECRET),
    )
}

fn rejection(token: &str, user: &str, now: SystemTime) -> TokenRejection {
    verifier().verify(token, user, now).expect_err("the token must be refused")
}

#[tokio::test]
async fn sdk_tokens_verify_for_both_actions_with_and_without_session_token() {
    for (action, user) in [(Action::DbConnect, "app"), (Action::DbConnectAdmin, "admin")] {
        for session in [None, Some(SESSION_TOKEN)] {
            let token = sdk_token(Request { action, session, ..Request::default() }).await;
            assert_eq!(token.contains("X-Amz-Security-Token="), session.is_some(), "{token}");
            let now = SystemTime::now();
            let verified = verifier().verify(&token, user, now).unwrap_or_else(|rejection| {
                panic!("{action} token (session {session:?}) refused: {rejection}")
            });
            assert_eq!(verified.action, action);
            assert_eq!(verified.access_key_id, AKID);
            let lifetime = verified.expires_at.duration_since(now).expect("expires in the future");
            assert!(
                lifetime <= Duration::from_secs(900) && lifetime >= Duration::from_secs(890),
                "{lifetime:?}"
            );
        }
    }
}

#[tokio::test]
async fn other_hosts_the_gateway_answers_to_and_ports_are_accepted() {
    // (Hosts in lower case: the SDK signs the host as given but writes the token with the
    // lower-cased host of `url::Url`, so a token for "LocalHost" cannot verify anywhere.)
    for host in ["localhost", "127.0.0.1", "localhost:5432"] {
        let token = sdk_token(Request { host, ..Request::default() }).await;
        verifier()
            .verify(&token, "app", SystemTime::now())
            .unwrap_or_else(|rejection| panic!("token for {host} refused: {rejection}"));
    }
}

#[tokio::test]
async fn a_week_long_token_verifies_until_its_last_second() {
    let token = sdk_token(Request { expires_in: 604_800, ..Request::default() }).await;
    let verified = verifier().verify(&token, "app", SystemTime::now()).expect("a one-week token verifies");
    verifier().verify(&token, "app", verified.expires_at).expect("valid at its expiry instant");
    let after = rejection(&token, "app", verified.expires_at + Duration::from_secs(1));
    assert!(
        matches!(after, TokenRejection::Expired { seconds_ago: 1, expires_in: 604_800, .. }),
        "{after:?}"
    );
}

#[tokio::test]
async fn expired_token_is_expired_with_dsqls_hint() {
    let token = sdk_token(Request::default()).await;
    let later = SystemTime::now() + Duration::from_secs(901 + 60);
    let rejection = rejection(&token, "app", later);
    assert!(matches!(rejection, TokenRejection::Expired { expires_in: 900, .. }), "{rejection:?}");
    assert!(rejection.is_expired());
    assert_eq!(rejection.rule(), "expired");
    let sql = rejection.to_sql_error();
    assert_eq!((sql.code, sql.hint.as_deref()), ("28000", Some("Signature expired")));
    assert!(rejection.to_string().contains("expired"), "{rejection}");
}

#[tokio::test]
async fn token_from_the_future_is_not_yet_valid() {
    let token = sdk_token(Request::default()).await;
    let earlier = SystemTime::now() - Duration::from_secs(3600);
    let rejection = rejection(&token, "app", earlier);
    assert!(
        matches!(rejection, TokenRejection::NotYetValid { seconds_ahead: 3599..=3601, .. }),
        "{rejection:?}"
    );
    assert!(!rejection.is_expired());
    // Inside the skew tolerance it verifies.
    verifier()
        .verify(&token, "app", SystemTime::now() - Duration::from_secs(200))
        .expect("small skew is tolerated");
}

#[tokio::test]
async fn action_must_fit_the_user() {
    let connect = sdk_token(Request::default()).await;
    let admin = sdk_token(Request { action: Action::DbConnectAdmin, ..Request::default() }).await;
    let now = SystemTime::now();
    assert_eq!(
        rejection(&connect, "admin", now),
        TokenRejection::WrongAction { expected: Action::DbConnectAdmin, found: Action::DbConnect }
    );
    assert_eq!(
        rejection(&admin, "app", now),
        TokenRejection::WrongAction { expected: Action::DbConnect, found: Action::DbConnectAdmin }
    );
    // Role names are case-sensitive: "Admin" is a custom role.
    verifier().verify(&connect, "Admin", now).expect("a DbConnect token for the role \"Admin\"");
    assert_eq!(rejection(&connect, "admin", now).to_sql_error().hint, None);
}

#[tokio::test]
async fn wrong_host_region_and_access_key_are_named() {
    let now = SystemTime::now();
    let other_host = sdk_token(Request { host: "zzzz.dsql.us-east-1.on.aws", ..Request::default() }).await;
    let rejection_host = rejection(&other_host, "app", now);
    assert!(
        matches!(&rejection_host, TokenRejection::WrongHost { found, .. } if found == "zzzz.dsql.us-east-1.on.aws"),
        "{rejection_host:?}"
    );
    assert_eq!(rejection_host.rule(), "wrong_host");

    let west = sdk_token(Request { region: "us-west-2", ..Request::default() }).await;
    assert_eq!(
        rejection(&west, "app", now),
        TokenRejection::WrongRegion { found: "us-west-2".to_owned(), expected: "us-east-1".to_owned() }
    );

    let stranger = sdk_token(Request { akid: "AKIDSOMEONEELSE", ..Request::default() }).await;
    let rejection_key = rejection(&stranger, "app", now);
    assert!(
        matches!(&rejection_key, TokenRejection::UnknownAccessKey { found, .. } if found == "AKIDSOMEONEELSE"),
        "{rejection_key:?}"
    );
    for rejection in [rejection_host, rejection_key] {
        assert_eq!(rejection.to_sql_error().message, "unable to accept connection, access denied");
        assert_eq!(rejection.to_sql_error().hint, None);
    }
}

#[tokio::test]
async fn altered_or_foreign_signatures_are_bad_signatures() {
    let now = SystemTime::now();
    let token = sdk_token(Request::default()).await;
    let (head, signature) = token.split_once("X-Amz-Signature=").expect("signature param");
    // Flip each hex digit in turn: every one of them matters.
    for position in 0..signature.len() {
        let mut flipped: Vec<u8> = signature.bytes().collect();
        flipped[position] = if flipped[position] == b'0' { b'1' } else { b'0' };
        let altered = format!("{head}X-Amz-Signature={}", String::from_utf8(flipped).expect("ascii"));
        assert_eq!(rejection(&altered, "app", now), TokenRejection::BadSignature, "digit {position}");
    }

    let foreign = sdk_token(Request { secret: "another-secret", ..Request::default() }).await;
    assert_eq!(rejection(&foreign, "app", now), TokenRejection::BadSignature);

    // A signed parameter changed after signing (a longer lifetime).
    let stretched = token.replace("X-Amz-Expires=900", "X-Amz-Expires=901");
    assert_eq!(rejection(&stretched, "app", now), TokenRejection::BadSignature);

    // A session token altered or dropped.
    let with_session = sdk_token(Request { session: Some(SESSION_TOKEN), ..Request::default() }).await;
    let start = with_session.find("X-Amz-Security-Token=").expect("session param");
    let end = with_session[start..].find('&').map_or(with_session.len(), |offset| start + offset);
    // Cut "&X-Amz-Security-Token=..." (it is never the first parameter).
    let dropped = format!("{}{}", &with_session[..start - 1], &with_session[end..]);
    assert_eq!(rejection(&dropped, "app", now), TokenRejection::BadSignature);
    let changed = with_session.replacen("IQoJ", "IQoK", 1);
    assert_eq!(rejection(&changed, "app", now), TokenRejection::BadSignature);
}

#[tokio::test]
async fn messages_never_carry_the_secret_signature_or_session_token() {
    let now = SystemTime::now();
    let token = sdk_token(Request { session: Some(SESSION_TOKEN), ..Request::default() }).await;
    let signature = token.split_once("X-Amz-Signature=").expect("signature").1.to_owned();
    let mut rejections = vec![
        rejection(&token, "admin", now),
        rejection(&token, "app", now + Duration::from_secs(5000)),
        rejection(&token.replace("X-Amz-Expires=900", "X-Amz-Expires=901"), "app", now),
        rejection(&token.replace("X-Amz-Date=", "X-Amz-Date=1"), "app", now),
        rejection(&token.replace(&signature, &signature[..63]), "app", now),
    ];
    rejections.push(rejection(&format!("{token}&X-Amz-Signature={signature}"), "app", now));
    for rejection in rejections {
        let text = format!("{rejection} {rejection:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains(&signature[..16]), "{text}");
        assert!(!text.contains("session/token"), "{text}");
        assert!(!text.contains("IQoJb3Jp"), "{text}");
    }
    let debug = format!("{:?}", KeyPair::new(AKID, SECRET));
    assert!(debug.contains(AKID) && !debug.contains(SECRET), "{debug}");
}

#[tokio::test]
async fn malformed_tokens_are_malformed() {
    let now = SystemTime::now();
    let token = sdk_token(Request::default()).await;
    let signature = token.split_once("X-Amz-Signature=").expect("signature").1.to_owned();
    let date = token.split_once("X-Amz-Date=").expect("date").1[..16].to_owned();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("no query", HOST.to_owned()),
        ("no host", token[HOST.len()..].to_owned()),
        ("https prefix kept", format!("https://{token}")),
        ("missing signature", token.replace(&format!("&X-Amz-Signature={signature}"), "")),
        ("missing date", token.replace(&format!("X-Amz-Date={date}&"), "")),
        ("missing action", token.replace("Action=DbConnect&", "")),
        ("unknown action", token.replace("Action=DbConnect", "Action=DbDrop")),
        ("bad month", token.replace(&date, &format!("{}13{}", &date[..4], &date[6..]))),
        ("30 February", token.replace(&date, &format!("{}0230{}", &date[..4], &date[8..]))),
        ("date without Z", token.replace(&date, &date[..15])),
        ("non-hex signature", token.replace(&signature, &format!("{}zz", &signature[..62]))),
        ("short signature", token.replace(&signature, &signature[..63])),
        ("duplicated parameter", format!("{token}&X-Amz-Expires=900")),
        ("other algorithm", token.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")),
        (
            "more signed headers",
            token.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-date"),
        ),
        ("negative expiry", token.replace("X-Amz-Expires=900", "X-Amz-Expires=-900")),
        ("zero expiry", token.replace("X-Amz-Expires=900", "X-Amz-Expires=0")),
        ("short credential", token.replace("%2Fus-east-1%2Fdsql", "%2Fus-east-1")),
        ("invalid percent-encoding", token.replace("%2Fdsql", "%FFdsql")),
        ("garbage", "\u{0}\u{7f}ÿ/?&&==%%%\u{1F600}".to_owned()),
        ("space in host", format!("bad host{}", &token[HOST.len()..])),
        ("huge", format!("{token}&padding={}", "x".repeat(20_000))),
        ("many parameters", format!("{token}{}", (0..40).map(|i| format!("&p{i}=1")).collect::<String>())),
    ];
    for (what, token) in cases {
        match verifier().verify(&token, "app", now) {
            Err(TokenRejection::Malformed { reason }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected Malformed, got {other:?}"),
        }
    }
    let too_long = rejection(&token.replace("X-Amz-Expires=900", "X-Amz-Expires=604801"), "app", now);
    assert_eq!(too_long, TokenRejection::ExpiryTooLong { expires_in: 604_801 });
    assert_eq!(too_long.rule(), "expiry_too_long");
}

#[tokio::test]
async fn every_truncation_and_byte_flip_of_a_token_is_refused_without_panic() {
    let now = SystemTime::now();
    let token = sdk_token(Request { session: Some(SESSION_TOKEN), ..Request::default() }).await;
    let verifier = verifier();
    verifier.verify(&token, "app", now).expect("the whole token verifies");
    for end in 0..token.len() {
        assert!(verifier.verify(&token[..end], "app", now).is_err(), "prefix of {end} bytes accepted");
    }
    // Replace each byte with each of a few troublesome characters.
    for position in 0..token.len() {
        for replacement in ['%', '&', '=', '/', '?', '+', '\u{e9}', 'A'] {
            let mut altered = token.clone();
            altered.replace_range(position..=position, replacement.encode_utf8(&mut [0; 4]));
            if altered != token {
                let _ = verifier.verify(&altered, "app", now);
            }
        }
    }
}

#[test]
fn the_far_past_and_pre_epoch_clocks_do_not_panic() {
    let token = "localhost/?Action=DbConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDLOCALGATEWAY%2F99991231%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=99991231T235959Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=0000000000000000000000000000000000000000000000000000000000000000";
    for now in [UNIX_EPOCH, UNIX_EPOCH - Duration::from_secs(10), SystemTime::now()] {
        assert_eq!(verifier().verify(token, "app", now), Err(TokenRejection::BadSignature));
    }
}
