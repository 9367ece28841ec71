//! `runway aws ...`: arguments, the pure preparation of a chain from the
//! merged settings and the job's env, and the three commands.
//!
//! Order matters and is fixed: settings and roles are checked (including
//! `aws.allowedRoles`) before the pod's identity is touched or STS is called,
//! so a refused role costs nothing and exits 3.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aws_config::provider_config::ProviderConfig;
use clap::{Args, Subcommand, ValueEnum};

use crate::aws::chain::{self, ChainSpec, Hop, Note, Pacer, RetryPolicy};
use crate::aws::config::{self, FileConfig, Flags, SessionTagging};
use crate::aws::error::AwsError;
use crate::aws::session_name::{self, GithubContext};
use crate::aws::sts::{self, SdkSts};
use crate::aws::{allowed, identity, output, tags, whoami};

#[derive(Args, Debug)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub command: AwsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// The pod's identity, then each --role in order; outputs the last hop's credentials.
    AssumeRole(AssumeRoleArgs),
    /// The same chain as `credential_process` JSON, or `--output profile NAME` to
    /// write a profile that runs this command, so SDKs refresh past the 1 h chain limit.
    CredentialProcess(CredentialProcessArgs),
    /// GetCallerIdentity with each hop's credentials, for debugging trust policies.
    Whoami(ChainArgs),
}

/// The chain and its options; each overrides `RUNWAY_AWS_*` env and the
/// scale set's config file (`RUNWAY_AWS_CONFIG`, default /etc/runway/aws/config.yaml).
#[derive(Args, Debug, Clone, Default)]
pub struct ChainArgs {
    /// A role to assume after the pod's identity; repeat for a chain.
    #[arg(long = "role", value_name = "ARN")]
    pub roles: Vec<String>,
    /// The region of STS and of the credentials (else `aws.region`, AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Template, e.g. `{workflow}_{run_number}_{job}`.
    #[arg(long, value_name = "TEMPLATE")]
    pub session_name: Option<String>,
    /// For the last hop; clamped to 3600 when it is role chaining.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u32>,
    #[arg(long, value_enum)]
    pub session_tagging: Option<SessionTagging>,
    /// A session tag to send (GitHub names: Repository, Workflow, RunId, Actor, Job, ...).
    #[arg(long = "tag", value_name = "KEY", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// A tag key later hops inherit (must be among the tags sent).
    #[arg(long = "transitive-tag-key", value_name = "KEY", value_delimiter = ',')]
    pub transitive_tag_keys: Vec<String>,
    /// Template, like the session name.
    #[arg(long, value_name = "TEMPLATE")]
    pub source_identity: Option<String>,
    /// The ExternalId the roles' trust policies require, if any.
    #[arg(long)]
    pub external_id: Option<String>,
    /// Inline session policy (JSON, at most 2048 characters) for the last hop.
    #[arg(long, value_name = "JSON")]
    pub policy: Option<String>,
}

#[derive(Args, Debug)]
pub struct AssumeRoleArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// env | github-env | json | profile NAME (default: github-env in a job step, else env).
    #[arg(long, num_args = 1..=2, value_names = ["FORMAT", "NAME"])]
    pub output: Vec<String>,
    /// Also write step outputs to $GITHUB_OUTPUT (aws-account-id, authenticated-arn,
    /// and with `credentials` the credentials).
    #[arg(long, value_enum)]
    pub step_outputs: Option<StepOutputs>,
}

#[derive(Args, Debug)]
pub struct CredentialProcessArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// json (default) | profile NAME.
    #[arg(long, num_args = 1..=2, value_names = ["FORMAT", "NAME"])]
    pub output: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StepOutputs {
    Identity,
    Credentials,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Env,
    GithubEnv,
    Json,
    Profile(String),
}

pub fn parse_output(words: &[String], default: Output) -> Result<Output, AwsError> {
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Ok(default),
        ["env"] => Ok(Output::Env),
        ["github-env"] => Ok(Output::GithubEnv),
        ["json"] => Ok(Output::Json),
        ["profile", name] if !name.trim().is_empty() && !name.contains([']', '[']) => {
            Ok(Output::Profile(name.trim().to_string()))
        }
        other => Err(AwsError::BadInput(format!(
            "--output {}: expected env, github-env, json or profile NAME",
            other.join(" ")
        ))),
    }
}

impl ChainArgs {
    fn flags(&self) -> Flags {
        Flags {
            region: self.region.clone(),
            session_tagging: self.session_tagging,
            tags: self.tags.clone(),
            transitive_tag_keys: self.transitive_tag_keys.clone(),
            session_name: self.session_name.clone(),
            duration: self.duration,
            source_identity: self.source_identity.clone(),
            external_id: self.external_id.clone(),
            policy: self.policy.clone(),
        }
    }

    /// The arguments that reproduce this chain, for a `credential_process`
    /// line: env and the config file are read again at refresh time.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: &str| {
            args.push(flag.to_string());
            args.push(value.to_string());
        };
        for role in &self.roles {
            push("--role", role);
        }
        let optional = [
            ("--region", &self.region),
            ("--session-name", &self.session_name),
            ("--source-identity", &self.source_identity),
            ("--external-id", &self.external_id),
            ("--policy", &self.policy),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                push(flag, value);
            }
        }
        if let Some(d) = self.duration {
            push("--duration", &d.to_string());
        }
        if let Some(t) = self.session_tagging {
            let name = t
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            push("--session-tagging", &name);
        }
        for tag in &self.tags {
            push("--tag", tag);
        }
        for key in &self.transitive_tag_keys {
            push("--transitive-tag-key", key);
        }
        args
    }
}

/// What a run needs besides I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub spec: ChainSpec,
    pub region: String,
}

/// STS's global endpoint region, for when nothing names one.
pub const FALLBACK_REGION: &str = "us-east-1";
/// Shrinks backoff (tests, or impatient debugging); not a scale-set setting.
pub const BACKOFF_BASE_ENV: &str = "RUNWAY_AWS_BACKOFF_BASE_MS";

fn check_role(role: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = role.splitn(6, ':').collect();
    let ok =
        parts.len() == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[5].starts_with("role/");
    if ok {
        Ok(())
    } else {
        Err(AwsError::BadInput(format!(
            "--role `{role}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        )))
    }
}

/// Settings + roles + the job's env -> the chain to run. Pure.
pub fn prepare(
    args: &ChainArgs,
    file: FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Prepared, AwsError> {
    let settings = config::merge(file, env, args.flags())?;
    let roles: Vec<String> = args
        .roles
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    for role in &roles {
        check_role(role)?;
    }
    if let Some(role) = allowed::first_refused(&roles, &settings.allowed_roles) {
        return Err(AwsError::NotAllowed {
            role: role.to_string(),
            patterns: settings.allowed_roles.join(", "),
        });
    }
    let ctx = GithubContext::from_env(env);
    let session_name = session_name::render(&settings.session_name, &ctx).map_err(|source| {
        AwsError::Template {
            setting: settings.session_name_source.to_string(),
            source,
        }
    })?;
    let source_identity = match &settings.source_identity {
        Some(template) => {
            Some(
                session_name::render(template, &ctx).map_err(|source| AwsError::Template {
                    setting: settings.source_identity_source.to_string(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let tag_set = match settings.tagging {
        SessionTagging::Never => tags::TagSet::default(),
        SessionTagging::Always | SessionTagging::Auto => {
            tags::build(&settings.tag_names, &settings.transitive_tag_keys, &ctx).map_err(
                |source| {
                    let setting = match source {
                        tags::TagError::TransitiveNotATag { .. } => settings.transitive_source,
                        _ => settings.tags_source,
                    };
                    AwsError::Tags {
                        setting: setting.to_string(),
                        source,
                    }
                },
            )?
        }
    };
    let region = settings
        .region
        .clone()
        .or_else(|| env("AWS_REGION").filter(|r| !r.is_empty()))
        .or_else(|| env("AWS_DEFAULT_REGION").filter(|r| !r.is_empty()))
        .unwrap_or_else(|| FALLBACK_REGION.to_string());
    let mut retry = RetryPolicy::default();
    if let Some(ms) = env(BACKOFF_BASE_ENV).and_then(|v| v.trim().parse::<u64>().ok()) {
        retry.base = Duration::from_millis(ms);
    }
    Ok(Prepared {
        spec: ChainSpec {
            roles,
            session_name,
            duration: settings.duration,
            tagging: settings.tagging,
            tags: tag_set,
            source_identity,
            external_id: settings.external_id,
            policy: settings.policy,
            retry,
        },
        region,
    })
}

fn real_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the mounted config. A missing default file means defaults (a scale
/// set without `aws:` values); a missing file someone named is an error.
fn load_file(env: &dyn Fn(&str) -> Option<String>) -> Result<FileConfig, AwsError> {
    let (path, named) = match env(config::CONFIG_PATH_ENV).filter(|p| !p.is_empty()) {
        Some(p) => (p, true),
        None => (config::DEFAULT_CONFIG_PATH.to_string(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(config::parse_file(&path, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => Ok(FileConfig::default()),
        Err(e) => Err(AwsError::BadInput(format!(
            "cannot read {path} ({}): {e}",
            config::CONFIG_PATH_ENV
        ))),
    }
}

struct TokioPacer;

impl Pacer for TokioPacer {
    async fn sleep(&self, delay: Duration) {
        tokio::time::sleep(delay).await;
    }
    fn jitter(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// Notes go to stderr; in a job step, warnings become `::warning::`
/// annotations instead, which the runner also shows in the log.
fn show(note: &Note, annotations: bool) {
    if annotations && note.is_warning() {
        println!(
            "::warning title=runway aws::{}",
            output::workflow_command_data(&note.to_string())
        );
    } else if note.is_warning() {
        eprintln!("runway aws: warning: {note}");
    } else {
        eprintln!("runway aws: {note}");
    }
}

async fn execute(
    args: &ChainArgs,
    credential_process: bool,
    annotations: bool,
) -> Result<(Prepared, SdkSts, Vec<Hop>), AwsError> {
    let prepared = prepare(args, load_file(&real_env)?, &real_env)?;
    let sts = SdkSts::new(sts::sdk_config(&prepared.region).await);
    let provider = ProviderConfig::default()
        .with_http_client(sts::http_client())
        .with_region(Some(aws_config::Region::new(prepared.region.clone())));
    let start = identity::resolve(&real_env, &provider, credential_process).await?;
    let hops = chain::run(&sts, &TokioPacer, start, &prepared.spec, &mut |n| {
        show(&n, annotations)
    })
    .await?;
    Ok((prepared, sts, hops))
}

fn last(hops: &[Hop]) -> &Hop {
    // `chain::run` always returns the start hop at least.
    &hops[hops.len() - 1]
}

async fn assume_role(args: AssumeRoleArgs) -> Result<(), AwsError> {
    let default = if real_env("GITHUB_ENV").is_some() {
        Output::GithubEnv
    } else {
        Output::Env
    };
    let out = parse_output(&args.output, default)?;
    let (prepared, sts, hops) = execute(&args.chain, false, out == Output::GithubEnv).await?;
    let hop = last(&hops);
    let creds = &hop.session.credentials;
    let region = &prepared.region;
    match &out {
        Output::Env => print!("{}", output::env_lines(creds, region)),
        Output::Json => println!("{}", output::process_json(creds)),
        Output::GithubEnv => {
            let path = real_env("GITHUB_ENV").ok_or_else(|| {
                AwsError::BadInput(
                    "--output github-env needs $GITHUB_ENV (set in job steps)".into(),
                )
            })?;
            let (masks, lines) = output::github_env(creds, region);
            print!("{masks}");
            output::append(&PathBuf::from(path), &lines)?;
        }
        Output::Profile(name) => {
            let cred_file =
                output::shared_file(&real_env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
            let conf_file = output::shared_file(&real_env, "AWS_CONFIG_FILE", "config");
            let mut keys = vec![
                (
                    "aws_access_key_id".to_string(),
                    creds.access_key_id().to_string(),
                ),
                (
                    "aws_secret_access_key".to_string(),
                    creds.secret_access_key().to_string(),
                ),
            ];
            if let Some(token) = creds.session_token() {
                keys.push(("aws_session_token".to_string(), token.to_string()));
            }
            output::edit_file(&cred_file, name, Some(&keys))?;
            let conf = [("region".to_string(), region.clone())];
            output::edit_file(&conf_file, &output::config_header(name), Some(&conf))?;
            eprintln!(
                "runway aws: wrote profile {name} to {} and {}; these credentials do not refresh \
                 (`runway aws credential-process --output profile {name}` writes one that does)",
                conf_file.display(),
                cred_file.display()
            );
        }
    }
    if let Some(kind) = args.step_outputs {
        write_step_outputs(kind, &sts, hop).await?;
    }
    Ok(())
}

async fn write_step_outputs(kind: StepOutputs, sts: &SdkSts, hop: &Hop) -> Result<(), AwsError> {
    let path = real_env("GITHUB_OUTPUT").ok_or_else(|| {
        AwsError::BadInput("--step-outputs needs $GITHUB_OUTPUT (set in job steps)".into())
    })?;
    let arn = match &hop.session.arn {
        Some(arn) => arn.clone(),
        None => match sts.get_caller_identity(&hop.session.credentials).await {
            Ok(id) => id.arn,
            Err(f) => {
                return Err(AwsError::Refused {
                    action: "GetCallerIdentity",
                    role: "the pod's identity".into(),
                    code: f.code,
                    message: f.message,
                });
            }
        },
    };
    let mut text = format!(
        "aws-account-id={}\nauthenticated-arn={arn}\n",
        output::account_of(&arn).unwrap_or_default()
    );
    if kind == StepOutputs::Credentials {
        let creds = &hop.session.credentials;
        text.push_str(&format!(
            "aws-access-key-id={}\naws-secret-access-key={}\naws-session-token={}\naws-expiration={}\n",
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().unwrap_or_default(),
            creds.expiry().map(output::rfc3339).unwrap_or_default()
        ));
    }
    output::append(&PathBuf::from(path), &text)
}

async fn credential_process(args: CredentialProcessArgs) -> Result<(), AwsError> {
    let out = parse_output(&args.output, Output::Json)?;
    if !matches!(out, Output::Json | Output::Profile(_)) {
        return Err(AwsError::BadInput(
            "credential-process: --output is json or profile NAME".into(),
        ));
    }
    // Run the chain even when writing the profile: a broken chain should
    // fail this step, not a later step's SDK call.
    let (prepared, _, hops) = execute(&args.chain, true, false).await?;
    match out {
        Output::Profile(name) => {
            let exe = std::env::current_exe()
                .map_err(|e| AwsError::BadInput(format!("cannot find this program's path: {e}")))?;
            let mut words = vec![
                exe.display().to_string(),
                "aws".into(),
                "credential-process".into(),
            ];
            words.extend(args.chain.to_args());
            let command = words
                .iter()
                .map(|w| output::shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ");
            let conf_file = output::shared_file(&real_env, "AWS_CONFIG_FILE", "config");
            let cred_file =
                output::shared_file(&real_env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
            let entries = [
                ("credential_process".to_string(), command),
                ("region".to_string(), prepared.region),
            ];
            output::edit_file(&conf_file, &output::config_header(&name), Some(&entries))?;
            // Static keys under the same name would win over credential_process.
            if cred_file.exists() {
                output::edit_file(&cred_file, &name, None)?;
            }
            eprintln!(
                "runway aws: wrote profile {name} to {}: SDKs refresh it by running runway",
                conf_file.display()
            );
        }
        _ => println!("{}", output::process_json(&last(&hops).session.credentials)),
    }
    Ok(())
}

async fn whoami(args: ChainArgs) -> Result<(), AwsError> {
    let (_, sts, hops) = execute(&args, false, false).await?;
    let mut identities = Vec::new();
    for hop in &hops {
        identities.push(
            sts.get_caller_identity(&hop.session.credentials)
                .await
                .map_err(|f| format!("{}: {}", f.code, f.message)),
        );
    }
    print!("{}", whoami::render(&hops, &identities));
    Ok(())
}

pub async fn run(args: AwsArgs) -> ExitCode {
    let result = match args.command {
        AwsCommand::AssumeRole(a) => assume_role(a).await,
        AwsCommand::CredentialProcess(a) => credential_process(a).await,
        AwsCommand::Whoami(a) => whoami(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runway aws: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
