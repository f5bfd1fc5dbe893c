"""The parse-and-ship workers, a process each: their life in one folder.

pool.py is the receiving process's side (`WorkerPool`: start, supervise, relay, stop); child.py
is the worker's entry point (`python -m receiver.workers.child FD`: spool reader, output and
`Shipper` of receiver/ship/); protocol.py is every message between the two, one frozen type
each; ledger_link.py is the spool ledger as a worker sees it, across the socket pair. The
receiving process imports pool.py (and through it protocol.py) only: never the shipper or the
HTTP client. This package file imports nothing.
"""
