//! The same chain against moto's STS, an independent implementation of the
//! wire format: proves the requests and parsing are AWS's, not just the
//! fake's. moto ignores trust, tags and the chain limit, so this is the
//! happy path only.

mod aws_support;

use aws_support::{JSON, Job, SESSION_NAME};
use runway_sandbox::sts::MotoServer;

const ACCOUNT: &str = "123456789012";

#[tokio::test]
async fn a_three_hop_chain_against_moto() {
    let moto = match MotoServer::start().await {
        Ok(moto) => moto,
        Err(e) => panic!("moto is needed for this test (sandbox/scripts/install-deps.sh): {e}"),
    };
    let role = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    // moto does not check the token's signature: any JWT-shaped string works.
    let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJydW5uZXIifQ.";
    let job = Job::new(
        &moto.endpoint(),
        &role("base"),
        token,
        "sessionTags: [Repository, Actor]\n",
    );
    let (a, b) = (role("A"), role("B"));
    let run = job.aws("assume-role", &[&a, &b], JSON).await;
    run.ok();
    let creds = run.json();
    assert_eq!(creds["Version"], 1);
    assert!(
        creds["AccessKeyId"].as_str().is_some_and(|k| k.len() >= 16),
        "{creds}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(creds["Expiration"].as_str().unwrap()).is_ok());

    let run = job.aws("whoami", &[&a, &b], &[]).await;
    run.ok();
    for name in ["base", "A", "B"] {
        let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{SESSION_NAME}");
        assert!(run.stdout.contains(&arn), "{arn} in\n{}", run.stdout);
    }
}
