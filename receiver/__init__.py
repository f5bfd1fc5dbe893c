"""haproxy-receiver: HAProxy syslog → typed ECS documents → durable spool → Elasticsearch."""

__version__ = "0.1.0"
