#!/usr/bin/env python3
"""The storage floor of the send path: what SQLite alone costs per message on this
machine, with lingshi's schema (every migration in migrations/sqlite), WAL and
synchronous=FULL, and no server around it.

It creates 1,000 citizens with one conversation each, then commits N messages in
batches of B the way the writer does (insert the messages, move each touched
conversation's last_seq and updated_at, one transaction per batch) and prints the time
spent in SQLite per message.

    python3 bench/scripts/sqlite_floor.py [--batch 100] [--messages 50000] [variant ...]

Variants (for comparison only; the server runs none of them):
    nock     no checkpoints on the commit path (the server checkpoints in the background)
    nosync   synchronous=OFF (not durable)
    noidem   without the idempotency index
    noconv   without the per-message update of the conversation's row
    p1024, p2048, p8192   a database page of that many bytes (4,096 otherwise)
"""
import argparse
import glob
import os
import sqlite3
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(variants, batch, messages):
    d = tempfile.mkdtemp(prefix="sqlite-floor-")
    path = os.path.join(d, "floor.db")
    db = sqlite3.connect(path, isolation_level=None)
    for v in variants:
        if v.startswith("p") and v[1:].isdigit():
            db.execute("PRAGMA page_size=" + v[1:])
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=" + ("OFF" if "nosync" in variants else "FULL"))
    db.execute("PRAGMA foreign_keys=ON")
    for f in sorted(glob.glob(os.path.join(ROOT, "migrations/sqlite/*.sql"))):
        db.executescript(open(f, encoding="utf-8").read())
    if "noidem" in variants:
        db.execute("DROP INDEX messages_idempotency")
    db.execute("PRAGMA cache_size=-32768")
    if "nock" in variants:
        db.execute("PRAGMA wal_autocheckpoint=0")
    now = "2026-12-01T00:00:00.000Z"
    citizens = [str(uuid.uuid4()) for _ in range(1000)]
    convs = [str(uuid.uuid4()) for _ in range(1000)]
    db.execute("BEGIN")
    for c, v in zip(citizens, convs):
        db.execute(
            "INSERT INTO citizens (id, display_name, created_at, updated_at) VALUES (?,?,?,?)",
            (c, "x", now, now),
        )
        db.execute(
            "INSERT INTO conversations (id, mission_id, citizen_id, channel, status, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (v, "be", c, "app", "open", now, now),
        )
    db.execute("COMMIT")
    seq = {v: 0 for v in convs}
    body = "我的护照在布鲁塞尔丢了，请问怎么补办旅行证？ My passport was stolen."
    ids = [(str(uuid.uuid1()), str(uuid.uuid4())) for _ in range(messages)]
    spent = 0.0
    i = 0
    while i < messages:
        rows, moved = [], {}
        for k in range(min(batch, messages - i)):
            j = (i + k) % len(convs)
            v = convs[j]
            seq[v] += 1
            mid, cmid = ids[i + k]
            rows.append((mid, v, seq[v], cmid, "citizen", citizens[j], "name", "text", body, "[]", now,
                         '{"category":"routine"}'))
            moved[v] = seq[v]
        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, "
            "sender_name, kind, body, attachments, created_at, triage) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        if "noconv" not in variants:
            db.executemany(
                "UPDATE conversations SET last_seq = ?, updated_at = ? WHERE id = ?",
                [(s, now, v) for v, s in moved.items()],
            )
        db.execute("COMMIT")
        spent += time.perf_counter() - t
        i += len(rows)
    wal = os.path.getsize(path + "-wal") if "nock" in variants else 0
    db.close()
    for f in glob.glob(path + "*"):
        os.unlink(f)
    os.rmdir(d)
    label = "+".join(variants) or "as served"
    print(f"{label:>12}  batch {batch:>4}: {messages / spent:>7.0f} msg/s, {spent / messages * 1e6:6.1f} µs per message in SQLite" + (f", {wal / messages / 1024:.1f} KiB of log per message" if wal else ""))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("variants", nargs="*", choices=["nock", "nosync", "noidem", "noconv", "p1024", "p2048", "p8192"])
    a = p.parse_args()
    run(a.variants, a.batch, a.messages)
