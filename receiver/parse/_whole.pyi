# The compiled check and write phases of whole events (receiver/parse/_whole.c; see
# receiver/parse/compiled.py). The step codes are the C enum's, by name.
from collections.abc import Callable
from typing import Any

SKIP: int
STR: int
INT: int
BYTES_UPLOADED: int
DURATION: int
STATUS: int
ADDRESS: int
FRONTEND: int
TERMINATION: int
REQUEST: int
METHOD: int
PATH: int
URI: int
QUERY: int
VERSION: int
CALL: int
CONTENT: int
TEXT_INT: int
TEXT_BOOL: int
TEXT_BYTES_UPLOADED: int
TEXT_STATUS: int
TEXT_DURATION: int

def program(steps: tuple[tuple[int, int, str | None, Any, str | None], ...],
            ips: dict[str, bool], is_ip: Callable[[str], bool],
            terminations: dict[str, dict[str, str]], related: str, transport: str, /) -> Any: ...
def run(program: Any, values: tuple[Any, ...], doc: dict[str, Any], mapper: Any, http: bool,
        /) -> tuple[Any, Any, Any, Any] | None: ...
def dotted_quad(text: str, /) -> bool: ...
