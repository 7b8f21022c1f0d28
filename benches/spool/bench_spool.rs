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

use cloud_accounting::record::{CloudRecord, Record, Status, render_messages};
use cloud_accounting::spool::{Layout, Queue};
use cloud_accounting::time::Timestamp;

const START: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z, as the Python side

/// One project's VM record: the same values `caso_spool.py` builds.
fn bench_record(vm: u64) -> Record {
    let wall = (vm % 1000 + 1) * 3600;
    let start = Timestamp::from_unix(START);
    Record::Cloud(CloudRecord {
        vm_uuid: uuid::Uuid::from_u128(u128::from(vm)),
        site_name: "TEST-Site".into(),
        compute_service: "TEST-Site".into(),
        machine_name: format!("vm-{vm}"),
        local_user_id: "a4519d7d-f60a-4908-9d63-7d9e17422188".into(),
        local_group_id: "03b6a6c4-cf2b-48b9-82f1-69c52b9f30af".into(),
        global_user_name: Some("alice".into()),
        fqan: "vo.example.org".into(),
        status: Status::Completed,
        start_time: start,
        end_time: Some(start.add_seconds(wall as i64)),
        suspend_duration: None,
        wall_duration: None,
        cpu_duration: None,
        cpu_count: 2,
        memory: 4096,
        disk: 40,
        public_ip_count: 1,
        image_id: Some("b39a8ed9-e15d-4b71-ada2-daf88efbac0a".into()),
        benchmark: None,
    })
}

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
    let Some(max_records) = std::num::NonZeroUsize::new(per_message as usize) else {
        return ExitCode::from(2);
    };
    let mut chunk = Vec::with_capacity(per_message as usize);
    let mut batch = queue.batch();
    let mut messages = 0u64;
    let mut vm = 0;
    while vm < records {
        chunk.clear();
        while vm < records && (chunk.len() as u64) < per_message {
            chunk.push(bench_record(vm));
            vm += 1;
        }
        // The records of one chunk fit one message (they are far below 512 KiB).
        let message = match render_messages(&chunk, max_records) {
            Ok(mut m) if m.len() == 1 => m.remove(0),
            Ok(m) => {
                eprintln!("expected one message per chunk, got {}", m.len());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
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
