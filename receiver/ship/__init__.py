"""The shipping stage: from a source of records to Elasticsearch/OpenSearch (or stdout), parsing
on the way.

`Shipper` (shipper.py) reads batches from a `Source` (source.py: a spool reader in the workers of
receiver/workers/, or a Kafka consumer in the worker tier, receiver/kafka/), has them parsed and
encoded (encode.py), collects shipments (batching.py) and delivers them (delivery.py,
classify.py, dead_letter.py) through the output `make_output` (output.py) picks; `run_setup`
(setup.py: where documents go, destination.py, then their template, template.py) is
`haproxy-receiver setup`. This package file imports nothing: the receiving
process loads only errors.py, never the HTTP client.
"""
