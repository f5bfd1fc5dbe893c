"""Shipping from the spool to Elasticsearch/OpenSearch (or stdout): the output stage.

`Shipper` (shipper.py) drives it; `make_output` (output.py) picks the output from the settings;
`run_setup` (template.py) is `haproxy-receiver setup`; `ShipProcess` (process.py) runs it all in
a child process. This package file imports nothing: the receiving process loads only
process.py and errors.py, never the HTTP client.
"""
