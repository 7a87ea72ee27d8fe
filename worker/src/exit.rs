//! The worker's exit codes: an API shared with the job definition's
//! `retryStrategy.evaluateOnExit` (see `infra/job-definition.json`).

/// How a worker process ends, and what AWS Batch should do about it.
///
/// | code | variant | meaning | Batch |
/// |---|---|---|---|
/// | 0 | [`ExitCode::Success`] | every image of the chunk has a terminal record (or belongs to a newer upload) | done |
/// | 2 | [`ExitCode::Usage`] | the command line was not understood (clap's own code) | EXIT |
/// | 3 | [`ExitCode::Retryable`] | transient faults outlasted the in-process retries, or SIGTERM stopped the run; unfinished images stay QUEUED | RETRY |
/// | 4 | [`ExitCode::JobUnusable`] | the job itself cannot be run: bad spec, changed or missing manifest, chunk index out of range, wrong table | EXIT |
///
/// Any other code (a panic's 101, 137 after SIGKILL) is not ours and is not
/// retried either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Every image of the chunk has a terminal record.
    Success = 0,
    /// The command line was not understood; clap exits with this code.
    Usage = 2,
    /// Run the job again: transient faults were exhausted, or the run was
    /// stopped by SIGTERM.
    Retryable = 3,
    /// The job cannot succeed however often it runs.
    JobUnusable = 4,
}

impl ExitCode {
    /// Every exit code, for tables and tests.
    pub const ALL: [ExitCode; 4] = [
        ExitCode::Success,
        ExitCode::Usage,
        ExitCode::Retryable,
        ExitCode::JobUnusable,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// True when AWS Batch should run the job again.
    pub fn is_retryable(self) -> bool {
        matches!(self, ExitCode::Retryable)
    }

    /// One line saying what the code means, for logs.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Success => "every image of the chunk has a terminal record",
            ExitCode::Usage => "the command line was not understood",
            ExitCode::Retryable => "some images are still queued; run the job again",
            ExitCode::JobUnusable => "the job cannot be run; retrying will not help",
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let codes: Vec<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 2, 3, 4]);
    }

    #[test]
    fn only_the_retryable_code_asks_for_a_retry() {
        let retryable: Vec<ExitCode> = ExitCode::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(retryable, [ExitCode::Retryable]);
    }
}
