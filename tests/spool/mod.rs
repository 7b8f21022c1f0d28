//! The state on disk that cASO and APEL SSM share with us, across processes:
//! the dirq spool (against Python dirq 1.8, concurrent consumers, SIGKILL),
//! lastrun files and the run lock (against cASO's own code).

mod concurrency;
mod crash;
mod dirq_interop;
mod lastrun_interop;
mod runlock_interop;
