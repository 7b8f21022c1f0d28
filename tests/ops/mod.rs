//! What operators meet: checks before cutover, the switch-over from cASO,
//! the hourly log, daemon mode under SIGTERM, the run report, the
//! Prometheus metrics and the deployment files.

mod cutover_checks;
mod daemon;
mod deploy_manifests;
mod metrics;
mod migration;
mod operator_logs;
mod run_report;
mod status;
