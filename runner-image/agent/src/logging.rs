//! Logs go to stderr (stdout is the command's output). `RUNWAY_LOG` sets the
//! filter (default `warn`); `RUNWAY_LOG_FORMAT=json` writes JSON lines.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if std::env::var("RUNWAY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.without_time().try_init()
    };
}
