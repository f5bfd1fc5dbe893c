"""The lines the benchmarks feed: what the peer benchmark's load generator sends (an RFC 3164
header and HAProxy's JSON log-format, varying client address, `seq` and `sent_us`)."""

from __future__ import annotations

import time

TEMPLATE = (
    '<134>{date} localhost haproxy[22]: {{"ci":"10.0.{a}.{b}","cp":{port},'
    '"t":"25/Nov/2026:19:47:11.{ms:03d}","ft":"fe_http","b":"be_app","s":"app1","Tl":"-",'
    '"Tw":0,"Tc":0,"Tr":0,"Tt":1,"ST":200,"r":"GET /api/v1/items?id={n} HTTP/1.1", '
    '"HM":"GET", "HP":"/api/v1/items", "B":200, "HQ":"?id={n}", "HU":"/api/v1/items?id={n}", '
    '"HV":"HTTP/1.1", "seq":{n}, "sent_us":{us}}}'
)


def lines(count: int) -> list[bytes]:
    base = int(time.time() * 1e6)
    return [
        TEMPLATE.format(date="Nov 25 19:47:11", a=n // 256 % 256, b=n % 256, port=1024 + n % 60000,
                        ms=n % 1000, n=n, us=base + n * 10).encode()
        for n in range(count)
    ]
