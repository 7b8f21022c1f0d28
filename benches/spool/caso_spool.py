"""Spool benchmark, cASO's side: what cASO 5.2.2 does with N cloud records
after extraction: caso.record.CloudRecord objects (all of them in memory, as
caso.extract.manager.get_records returns them), pushed by its SSM messenger
(ssm_message() per record, messages of max_size, dirq QueueSimple.add).

Usage: caso_spool.py QUEUE_DIR [RECORDS=1000000] [PER_MESSAGE=100]
The records carry the same values as benches/spool/bench_spool.rs renders.
"""

import datetime
import sys
import time
import uuid

from oslo_config import cfg

import caso.messenger.ssm
import caso.record


def main(argv):
    out = argv[1]
    n = int(argv[2]) if len(argv) > 2 else 1000000
    per_message = int(argv[3]) if len(argv) > 3 else 100
    cfg.CONF([], project="caso")
    cfg.CONF.set_override("output_path", out, group="ssm")
    cfg.CONF.set_override("max_size", per_message, group="ssm")
    start = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
    t0 = time.time()
    records = []
    for i in range(n):
        wall = (i % 1000 + 1) * 3600
        records.append(
            caso.record.CloudRecord(
                uuid=uuid.UUID(int=i),
                site_name="TEST-Site",
                name="vm-%d" % i,
                user_id="a4519d7d-f60a-4908-9d63-7d9e17422188",
                group_id="03b6a6c4-cf2b-48b9-82f1-69c52b9f30af",
                fqan="vo.example.org",
                start_time=start,
                end_time=start + datetime.timedelta(seconds=wall),
                compute_service="TEST-Site",
                status="completed",
                image_id="b39a8ed9-e15d-4b71-ada2-daf88efbac0a",
                user_dn="alice",
                memory=4096,
                cpu_count=2,
                disk=40,
                public_ip_count=1,
            )
        )
    caso.messenger.ssm.SSMMessenger().push(records)
    sys.stderr.write(
        "caso: %d records in %.2f s\n" % (n, time.time() - t0)
    )


if __name__ == "__main__":
    main(sys.argv)
