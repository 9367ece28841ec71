//! The pod's own identity: where the chain starts.
//!
//! The SDK's usual order, with two deliberate changes:
//! - IRSA's web identity is exchanged by the chain itself (not the SDK's
//!   provider), so its session name, retries and errors follow our rules.
//! - Profiles come last, and `credential-process` never reads them: the
//!   profile that runs `runway aws credential-process` would run it again.
//!   For the same reason `credential-process` puts the pod's identity before
//!   static env keys, which may be expiring keys an earlier step exported.
//!
//! IMDS is not consulted: in a pod it is the node's role, never the scale
//! set's, and probing it costs seconds of timeouts when it is blocked.

use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;

use crate::aws::chain::Start;
use crate::aws::error::AwsError;

/// Which identity sources exist, from the environment alone (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    WebIdentity,
    PodIdentity,
    Profile,
}

/// The sources to try, in order.
pub fn order(env: &dyn Fn(&str) -> Option<String>, credential_process: bool) -> Vec<Source> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let env_keys = set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY");
    let web = set("AWS_ROLE_ARN") && set("AWS_WEB_IDENTITY_TOKEN_FILE");
    let pod =
        set("AWS_CONTAINER_CREDENTIALS_FULL_URI") || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let mut out = Vec::new();
    if credential_process {
        out.extend(web.then_some(Source::WebIdentity));
        out.extend(pod.then_some(Source::PodIdentity));
        out.extend(env_keys.then_some(Source::Environment));
    } else {
        out.extend(env_keys.then_some(Source::Environment));
        out.extend(web.then_some(Source::WebIdentity));
        out.extend(pod.then_some(Source::PodIdentity));
        out.push(Source::Profile);
    }
    out
}

/// Resolves the first source in `order` into a chain start.
pub async fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    provider: &ProviderConfig,
    credential_process: bool,
) -> Result<Start, AwsError> {
    let order = order(env, credential_process);
    let Some(first) = order.first() else {
        return Err(AwsError::NoIdentity(
            "no IRSA web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), no EKS Pod Identity \
             (AWS_CONTAINER_CREDENTIALS_FULL_URI) and no AWS_ACCESS_KEY_ID; give the scale set's \
             ServiceAccount the `eks.amazonaws.com/role-arn` annotation (`serviceAccount.annotations`)"
                .into(),
        ));
    };
    match first {
        Source::WebIdentity => {
            let role_arn = env("AWS_ROLE_ARN").unwrap_or_default();
            let path = env("AWS_WEB_IDENTITY_TOKEN_FILE").unwrap_or_default();
            // Read on every run: the kubelet rotates the projected token.
            let token =
                tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| AwsError::TokenFile {
                        path: path.clone(),
                        error: e.to_string(),
                    })?;
            Ok(Start::WebIdentity {
                role_arn,
                token: token.trim().to_string(),
            })
        }
        Source::Environment => {
            let creds = provide(
                &aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                "AWS_ACCESS_KEY_ID gave no credentials",
            )
            .await
            .map_err(AwsError::NoIdentity)?;
            let role_session = creds.session_token().is_some();
            Ok(Start::Credentials {
                credentials: creds,
                source: "environment (AWS_ACCESS_KEY_ID)",
                role_session,
            })
        }
        Source::PodIdentity => {
            let provider = aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(provider)
                .build();
            let creds = provide(&provider, "EKS Pod Identity gave no credentials")
                .await
                .map_err(AwsError::NoIdentity)?;
            Ok(Start::Credentials {
                credentials: creds,
                source: "EKS Pod Identity",
                role_session: true,
            })
        }
        Source::Profile => {
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .configure(provider)
                .build();
            // Reached when nothing else is set: say what was looked for.
            let creds = provide(&provider, "no AWS profile with credentials").await.map_err(|e| {
                AwsError::NoIdentity(format!(
                    "no IRSA web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), no EKS Pod Identity \
                     (AWS_CONTAINER_CREDENTIALS_FULL_URI), no AWS_ACCESS_KEY_ID, and {e}; give the scale \
                     set's ServiceAccount the `eks.amazonaws.com/role-arn` annotation (`serviceAccount.annotations`)"
                ))
            })?;
            let role_session = creds.session_token().is_some();
            Ok(Start::Credentials {
                credentials: creds,
                source: "AWS profile",
                role_session,
            })
        }
    }
}

/// The provider's credentials, or why not (prefixed with `what`).
async fn provide(provider: &impl ProvideCredentials, what: &str) -> Result<Credentials, String> {
    provider.provide_credentials().await.map_err(|e| {
        format!(
            "{what} ({})",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(keys: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
        move |k| keys.contains(&k).then(|| "x".to_string())
    }

    #[test]
    fn the_order_follows_the_sdk_except_where_it_would_loop() {
        use Source::*;
        let irsa = &["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];
        let all = &[
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ];
        assert_eq!(order(&env_of(irsa), false), vec![WebIdentity, Profile]);
        assert_eq!(order(&env_of(irsa), true), vec![WebIdentity]);
        assert_eq!(
            order(&env_of(all), false),
            vec![Environment, WebIdentity, PodIdentity, Profile]
        );
        assert_eq!(
            order(&env_of(all), true),
            vec![WebIdentity, PodIdentity, Environment]
        );
        assert_eq!(
            order(&env_of(&["AWS_ROLE_ARN"]), true),
            Vec::<Source>::new()
        );
        assert_eq!(order(&env_of(&["AWS_ACCESS_KEY_ID"]), false), vec![Profile]);
    }
}
