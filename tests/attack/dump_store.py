#!/usr/bin/env python3
"""Dumps every table of a SQLite file as SQL text (Python's sqlite3 `iterdump`: schema and rows,
blobs as X'..' hex), read-only, to stdout: what tests/tests/security.rs greps for secrets.

  dump_store.py <path/to/hub.db>
"""

import sqlite3
import sys


def main():
    path = sys.argv[1]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
    for line in db.iterdump():
        print(line)
    print(f"-- tables: {', '.join(sorted(tables))}")


if __name__ == "__main__":
    main()
