# The C extension pushgate/core/_yamlplain.c (see its comment and yamlsafe._plain_c).
from typing import Any

def plain(text: str, max_documents: int, max_depth: int, tags: dict[str, str],
          values: dict[tuple[str, str], Any], str_tag: str, scalar: Any, span: type, document: type,
          indexes: tuple[str, ...], /) -> list[Any] | None: ...
def version() -> str: ...
