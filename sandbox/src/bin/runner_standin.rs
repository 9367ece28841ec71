//! `runway-runner-standin`: the stand-in GitHub runner of the sandbox's
//! runner image; see `runway_sandbox::runner_standin`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    runway_sandbox::runner_standin::main()
}
