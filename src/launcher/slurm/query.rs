//! Questions to Slurm's client commands, each bounded in time: a slow or
//! unreachable controller must not stall a launch, a status or `down`.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A job as `squeue` or `scontrol` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobState {
    pub job: String,
    /// `PENDING`, `RUNNING`, `CANCELLED`, `TIMEOUT`, `NODE_FAIL`, ...
    pub state: String,
    /// Why it is pending or ended (`Priority`, `Resources`, `TimeLimit`);
    /// `None` when Slurm gives none.
    pub reason: Option<String>,
}

/// The command's stdout if it ran and succeeded in time.
async fn ask(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(QUERY_TIMEOUT, output)
        .await
        .ok()?
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `KEY=value` in one line of `scontrol -o` output.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

fn reason(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text != "None" && text != "(null)").then(|| text.to_owned())
}

/// Where Slurm itself reaches `node` (its `NodeAddr`).
pub(crate) async fn node_address(node: &str) -> Option<String> {
    let out = ask("scontrol", &["-o", "show", "node", node]).await?;
    field(out.lines().next()?, "NodeAddr").map(str::to_owned)
}

/// What `scontrol` says of job `job` now.
pub(crate) async fn job_state(job: &str) -> Option<JobState> {
    let out = ask("scontrol", &["-o", "show", "job", job]).await?;
    let line = out.lines().next()?;
    Some(JobState {
        job: job.to_owned(),
        state: field(line, "JobState")?.to_owned(),
        reason: field(line, "Reason").and_then(reason),
    })
}

/// This user's job named `name` in the queue, if there is one.
pub(crate) async fn queued(name: &str) -> Option<JobState> {
    let out = ask("squeue", &["--me", "-h", "-n", name, "-o", "%i|%T|%r"]).await?;
    let mut fields = out.lines().next()?.split('|');
    Some(JobState {
        job: fields.next()?.trim().to_owned(),
        state: fields.next()?.trim().to_owned(),
        reason: fields.next().and_then(reason),
    })
}

/// Whether `squeue` still lists job `job` (pending, running or completing).
pub(crate) async fn listed(job: &str) -> bool {
    ask("squeue", &["-h", "-j", job, "-o", "%T"])
        .await
        .is_some_and(|out| !out.trim().is_empty())
}

/// Whether srun takes `--overlap` (Slurm 20.11 and later): without it a
/// step would wait for the CPUs that the user's own steps hold.
pub(crate) async fn overlap_supported() -> bool {
    static SUPPORTED: OnceCell<bool> = OnceCell::const_new();
    *SUPPORTED
        .get_or_init(|| async {
            let version = ask("srun", &["--version"]).await.unwrap_or_default();
            parse_version(&version).is_none_or(|v| v >= (20, 11))
        })
        .await
}

/// `slurm 22.05.8` -> (22, 5).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().last()?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_fields() {
        let line = "JobId=12 JobName=x JobState=CANCELLED Reason=None NodeAddr=10.0.0.2";
        assert_eq!(field(line, "JobState"), Some("CANCELLED"));
        assert_eq!(field(line, "NodeAddr"), Some("10.0.0.2"));
        assert_eq!(field(line, "Job"), None);
        assert_eq!(field(line, "Reason").and_then(reason), None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("slurm-wlm 22.05.8\n"), Some((22, 5)));
        assert_eq!(parse_version("slurm 20.02.7"), Some((20, 2)));
        assert_eq!(parse_version("garbage"), None);
    }
}
