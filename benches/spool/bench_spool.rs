//! Spool benchmark, our side: render N cloud records into messages of M and
//! add each message durably to a dirq queue, as `caso-extract` does. Run by
//! `scripts/bench-spool.sh` beside cASO 5.2.2 + Python dirq doing the same.
//!
//! Usage: bench-spool QUEUE_DIR [RECORDS=1000000] [PER_MESSAGE=100] [COMMIT_EVERY=100]
//! Messages are added in batches of COMMIT_EVERY messages (`Queue::batch`,
//! one file-system sync per batch: the extractor commits once per project,
//! so 100 = projects of 10,000 records); COMMIT_EVERY=1 makes every message
//! its own durable `Queue::add` (file and directory fsync each).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cloud_accounting::spool::{Layout, Queue};

/// The fields of one cloud record that vary in the benchmark; the rest are
/// fixed, as they are for one project's VMs.
struct BenchRecord {
    vm: u64,
}

const START: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z, as the Python side

// ---- BENCH-ONLY renderer ------------------------------------------------
// A minimal APEL-cloud-message v0.4 renderer standing in for `crate::record`
// (being written in parallel). Swap `render_message` for the crate's renderer
// once merged; it must produce the same bytes as cASO for the same record
// (keys sorted, `Key: value`, records joined by `\n%%\n`).
fn render_record(r: &BenchRecord, out: &mut String) {
    use std::fmt::Write;
    let wall = (r.vm % 1000 + 1) * 3600;
    let cpus = 2;
    let _ = write!(
        out,
        "CloudComputeService: TEST-Site\n\
         CloudType: cloud-accounting/0.1.0 (OpenStack)\n\
         CpuCount: {cpus}\n\
         CpuDuration: {cpu}\n\
         Disk: 40\n\
         EndTime: {end}\n\
         FQAN: vo.example.org\n\
         GlobalUserName: alice\n\
         ImageId: b39a8ed9-e15d-4b71-ada2-daf88efbac0a\n\
         LocalGroupId: 03b6a6c4-cf2b-48b9-82f1-69c52b9f30af\n\
         LocalUserId: a4519d7d-f60a-4908-9d63-7d9e17422188\n\
         MachineName: vm-{vm}\n\
         Memory: 4096\n\
         PublicIPCount: 1\n\
         SiteName: TEST-Site\n\
         StartTime: {START}\n\
         Status: completed\n\
         VMUUID: {uuid}\n\
         WallDuration: {wall}",
        cpu = wall * cpus,
        end = START + wall as i64,
        vm = r.vm,
        uuid = uuid::Uuid::from_u128(u128::from(r.vm)).hyphenated(),
    );
}

fn render_message(records: &[BenchRecord], out: &mut String) {
    out.clear();
    out.push_str("APEL-cloud-message: v0.4\n");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push_str("\n%%\n");
        }
        render_record(r, out);
    }
    out.push('\n');
}
// ---- end of BENCH-ONLY renderer -----------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: bench-spool QUEUE_DIR [RECORDS] [PER_MESSAGE] [COMMIT_EVERY]");
        return ExitCode::from(2);
    };
    let parse = |i: usize, default: u64| args.get(i).map_or(Ok(default), |s| s.parse::<u64>());
    let (Ok(records), Ok(per_message), Ok(commit_every)) =
        (parse(1, 1_000_000), parse(2, 100), parse(3, 100))
    else {
        eprintln!("RECORDS, PER_MESSAGE and COMMIT_EVERY must be integers");
        return ExitCode::from(2);
    };
    let (per_message, commit_every) = (per_message.max(1), commit_every.max(1) as usize);
    let queue = match Queue::create(&PathBuf::from(dir.as_str()), Layout::Dirq) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut message = String::new();
    let mut chunk = Vec::with_capacity(per_message as usize);
    let mut batch = queue.batch();
    let mut messages = 0u64;
    let mut vm = 0;
    while vm < records {
        chunk.clear();
        while vm < records && (chunk.len() as u64) < per_message {
            chunk.push(BenchRecord { vm });
            vm += 1;
        }
        render_message(&chunk, &mut message);
        let added = if commit_every == 1 {
            queue.add(message.as_bytes()).map(drop)
        } else {
            batch.add(message.as_bytes())
        };
        if let Err(e) = added {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        messages += 1;
        if batch.len() == commit_every {
            let full = std::mem::replace(&mut batch, queue.batch());
            if let Err(e) = full.commit() {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = batch.commit() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "ours: {records} records, {messages} messages in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
