"""The workers: from the spool to Elasticsearch/OpenSearch (or stdout), parsing on the way.

`WorkerPool` (process.py) runs `service.workers` worker processes; in each, `Shipper`
(shipper.py) reads spool batches, has them parsed and encoded (encode.py), collects shipments
(batching.py) and delivers them (delivery.py, classify.py, dead_letter.py) through the output
`make_output` (output.py) picks; `run_setup` (template.py) is `haproxy-receiver setup`. This
package file imports nothing: the receiving process loads only process.py and errors.py, never
the HTTP client.
"""
