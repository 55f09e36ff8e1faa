"""The audit log notices tampering, stays one chain under concurrent writers, and refuses likenesses."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.audit import AuditLog

KEY = b"test audit key, 32 bytes long..."  # what the store derives from its passphrase


def filled(path: Path, count: int = 6) -> AuditLog:
    log = AuditLog(path, KEY)
    log.append("invite_created", invite="inv-1")
    for i in range(count - 1):
        log.append("call_started", persona="p1", far_end=f"203.0.113.{i}")
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_untouched_log_verifies(tmp_path):
    log = filled(tmp_path / "audit.log")
    log.append("call_ended", persona="p1", duration_s=61.5, far_end="203.0.113.9:5000")
    result = log.verify()
    assert result.ok and result.records == 7
    assert [r["seq"] for r in log.records()] == list(range(1, 8))


def test_edited_record_is_named(tmp_path):
    path = tmp_path / "audit.log"
    log = filled(path)
    rows = lines(path)
    rows[2] = rows[2].replace("203.0.113.1", "198.51.100.7")
    path.write_text("\n".join(rows) + "\n")
    result = log.verify()
    assert [(p.kind, p.seq, p.line) for p in result.problems] == [("edited", 3, 3)]
    assert "seq 3 was edited" in result.problems[0].message


def test_edited_record_with_recomputed_hash_breaks_the_chain(tmp_path):
    from engine.audit import canonical, record_hash

    path = tmp_path / "audit.log"
    log = filled(path)
    rows = lines(path)
    record = json.loads(rows[2])
    record["fields"]["far_end"] = "198.51.100.7"
    record["hash"] = record_hash(record)
    rows[2] = canonical(record).decode()
    path.write_text("\n".join(rows) + "\n")
    result = log.verify()
    assert [(p.kind, p.seq) for p in result.problems] == [("forged", 3), ("broken_chain", 4)]


def test_deleted_record_is_named(tmp_path):
    path = tmp_path / "audit.log"
    log = filled(path)
    rows = lines(path)
    del rows[3]
    path.write_text("\n".join(rows) + "\n")
    result = log.verify()
    assert [(p.kind, p.seq) for p in result.problems] == [("deleted", 4)]
    assert "seq 4 is missing" in result.problems[0].message


def test_reordered_records_are_named(tmp_path):
    path = tmp_path / "audit.log"
    log = filled(path)
    rows = lines(path)
    rows[2], rows[3] = rows[3], rows[2]
    path.write_text("\n".join(rows) + "\n")
    result = log.verify()
    assert [(p.kind, p.seq, p.line) for p in result.problems] == [("reordered", 3, 4)]


def test_damaged_line_is_reported_and_later_appends_still_chain(tmp_path):
    path = tmp_path / "audit.log"
    log = filled(path, 3)
    with open(path, "a") as handle:
        handle.write('{"seq": 4, "time": "cut sh')  # a torn write, no newline
    record = log.append("render", persona="p1")
    assert record["seq"] == 4
    result = log.verify()
    assert [(p.kind, p.line) for p in result.problems] == [("damaged", 4)]
    assert result.records == 4


def test_biometric_data_is_refused(tmp_path):
    log = AuditLog(tmp_path / "audit.log", KEY)
    with pytest.raises(ValueError, match="biometric"):
        log.append("render", persona="p1", embedding=[0.1, 0.2])
    with pytest.raises(ValueError, match="never media"):
        log.append("render", persona="p1", extra=np.zeros(512, dtype=np.float32))
    with pytest.raises(ValueError, match="never media"):
        log.append("render", persona="p1", blob=b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="at most"):
        log.append("render", persona="p1", numbers=list(range(1000)))
    with pytest.raises(ValueError, match="needs field"):
        log.append("call_ended", persona="p1")
    with pytest.raises(ValueError, match="unknown audit event"):
        log.append("photo_exported", persona="p1")
    assert not (tmp_path / "audit.log").exists() or not lines(tmp_path / "audit.log")


def test_threads_keep_one_unbroken_chain(tmp_path):
    path = tmp_path / "audit.log"

    def work(n: int) -> None:
        log = AuditLog(path, KEY)  # separate objects, as separate call handlers would have
        for i in range(25):
            log.append("render", persona=f"p{n}", frame_count=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = AuditLog(path, KEY).verify()
    assert result.ok and result.records == 100


def _append_many(path: str, tag: str) -> None:
    log = AuditLog(path, KEY)
    for i in range(30):
        log.append("call_started", persona=tag, far_end=f"10.0.0.{i}")


def test_processes_keep_one_unbroken_chain(tmp_path):
    path = tmp_path / "audit.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(path), f"p{n}")) for n in range(2)]
    for worker in workers:
        worker.start()
    _append_many(str(path), "parent")
    for worker in workers:
        worker.join()
    assert all(worker.exitcode == 0 for worker in workers)
    result = AuditLog(path, KEY).verify()
    assert result.ok and result.records == 90


def test_cli_verify_reports_tampering_with_exit_code_1(tmp_path, capsys):
    import argparse

    from calls import persona_cli

    home = tmp_path / "home"
    path = home / "audit.log"
    filled(path)
    rows = lines(path)
    del rows[1]
    path.write_text("\n".join(rows) + "\n")
    parser = argparse.ArgumentParser(prog="evercall")
    persona_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", "--home", str(home)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "deleted: record seq 2 is missing" in out
