# The compiled nesting writer (receiver/ship/_nested.c; see receiver/ship/nesting.py).
from collections.abc import Callable
from typing import Any

def write(steps: tuple[tuple[bytes, int], ...], names: tuple[str, ...], document: dict[str, Any],
          fallback: Callable[[Any], bytes], /) -> bytes | None: ...
def append(buffer: bytearray, head: bytes, offset: int, end: bytes,
           steps: tuple[tuple[bytes, int], ...], names: tuple[str, ...], document: dict[str, Any],
           fallback: Callable[[Any], bytes], /) -> int: ...
