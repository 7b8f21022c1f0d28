"""Interop oracle for the spool, lastrun and run-lock tests: the real Python
dirq 1.8, dateutil, cASO 5.2.2 and oslo.concurrency/fasteners doing what cASO
and ssmsend do. One subcommand per call; output is JSON lines on stdout.
"""

import datetime
import json
import os
import sys

from dirq.QueueSimple import QueueSimple


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "add":  # add ROOT N PREFIX: add N messages "<PREFIX> <i>\n"
        q = QueueSimple(args[0])
        for i in range(int(args[1])):
            name = q.add(("%s %d\n" % (args[2], i)).encode())
            out({"name": name})
    elif cmd == "list":  # iterate without locking
        q = QueueSimple(args[0])
        out({"names": list(q)})
    elif cmd == "count":
        out({"count": QueueSimple(args[0]).count()})
    elif cmd == "consume":  # what ssmsend does: iterate, lock, get, remove
        q = QueueSimple(args[0])
        for name in q:
            if not q.lock(name):
                continue
            body = q.get(name)
            q.remove(name)
            out({"name": name, "body": body.decode()})
    elif cmd == "lock":  # lock ROOT NAME...
        q = QueueSimple(args[0])
        out({"locked": [q.lock(n) for n in args[1:]]})
    elif cmd == "get":  # get ROOT NAME (locked)
        out({"body": QueueSimple(args[0]).get(args[1]).decode()})
    elif cmd == "unlock":
        QueueSimple(args[0]).unlock(args[1])
        out({})
    elif cmd == "remove":
        QueueSimple(args[0]).remove(args[1])
        out({})
    elif cmd == "purge":  # purge ROOT MAXTEMP MAXLOCK
        QueueSimple(args[0]).purge(int(args[1]), int(args[2]))
        out({})
    elif cmd == "lastrun-read":  # PATH...: cASO's get_lastrun parsing, dateutil
        import dateutil.parser

        for path in args:
            with open(path) as fd:
                d = dateutil.parser.parse(fd.read())
            if d.tzinfo is None:
                d = d.replace(tzinfo=datetime.timezone.utc)
            epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
            delta = d - epoch
            micros = (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds
            out({"micros": micros, "str": str(d)})
    elif cmd == "lastrun-write-caso":  # SPOOLDIR PROJECT=EXTRACT_TO_MICROS...
        from oslo_config import cfg

        import caso.extract.manager
        import caso.manager  # noqa: F401  (registers dry_run)

        cfg.CONF([], project="caso")
        fake = type("M", (), {})()
        fake.last_run_base = os.path.join(args[0], "lastrun")
        for pair in args[1:]:
            project, micros = pair.split("=")
            to = datetime.datetime(
                1970, 1, 1, tzinfo=datetime.timezone.utc
            ) + datetime.timedelta(microseconds=int(micros))
            caso.extract.manager.Manager.write_lastrun(fake, project, to)
        out({})
    elif cmd == "hold-lock":  # LOCK_PATH: cASO's external lock until stdin closes
        from oslo_concurrency import lockutils

        with lockutils.lock(
            "caso_should_not_run_in_parallel", lock_path=args[0], external=True
        ):
            out({"locked": True, "pid": os.getpid()})
            sys.stdin.read()
    elif cmd == "try-lock":  # LOCK_PATH: one non-blocking attempt, as fasteners
        import fasteners

        lock = fasteners.InterProcessLock(
            os.path.join(args[0], "caso_should_not_run_in_parallel")
        )
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        out({"acquired": got})
    else:
        raise SystemExit("unknown command %r" % cmd)


if __name__ == "__main__":
    main(sys.argv)
