"""`haproxy-receiver import`: existing HAProxy log files into Elasticsearch, exactly once however
often it runs, through the live path's own parser, encoder, batching, delivery and dead letters.

- `plan.py`: the command line's PATHs (files, globs, directories, `-`) -> the files to read, in
  order, and the units of work (a file, or a piece of a large plain one for `--workers`);
- `source.py`: units -> spool-like `Batch`es the shipper reads (receiver/ship/shipper.py's
  `SpoolSource`): each line a version 2 received record (receiver/event.py), its id made from
  the file's content (see `source.py`), plus the per-file tallies;
- `run.py`: one process's import: the source, the shipper, the document hook (the file's path,
  the `import` tag, `--since`/`--until`) and the count of what Elasticsearch already had;
- `workers.py`: `--workers N` processes sharing the units;
- `report.py`: the progress line on a terminal and the summary.

The lines themselves come from receiver/files.py (plain, gzip, stdin; whole lines; offsets).
"""
