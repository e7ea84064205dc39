"""The queries' SQL (SQLite's dialect, `?` placeholders) as PostgreSQL runs it.

The mixins' SQL is written to be portable where both engines agree (`INSERT ... ON
CONFLICT (key) DO NOTHING / DO UPDATE`, CASE instead of summed comparisons, aliased
subqueries, CAST(... AS BIGINT)); what is left is translated here, in one place, once
per distinct statement (cached):

- `?` -> `$1, $2, ...` (outside string literals);
- `MAX(a, b)` / `MIN(a, b)` (SQLite's scalar forms) -> `GREATEST` / `LEAST`;
- `TOTAL(x)` -> `COALESCE(SUM(x), 0)`;
- `x IS ?` (SQLite's null-safe equality) -> `x IS NOT DISTINCT FROM $n`;
- `NOT INDEXED` (a SQLite planner hint) -> nothing;
- the UTC-day expressions of `usage_rollup` (CAST truncation, strftime) -> FLOOR / to_char.
"""

from __future__ import annotations

import re
from functools import lru_cache

from proxy.store import usage_rollup

_PG_DAY = "FLOOR(created_at / 86400)"
# usage_rollup.day_of: the floor, corrected when rounding put the quotient on the next day.
_FRAGMENTS = (
    (usage_rollup.DAY_OF, f"CAST({_PG_DAY} - CASE WHEN {_PG_DAY} * 86400 > created_at THEN 1 ELSE 0 END AS BIGINT)"),
    (usage_rollup.GROUP_KEYS["day"], "to_char(to_timestamp(u.day * 86400) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
    (" NOT INDEXED", ""),
)
_CALL = re.compile(r"\b(MAX|MIN|TOTAL)\(", re.IGNORECASE)
_IS_PARAM = re.compile(r"\bIS \?")


def _close(sql: str, start: int) -> tuple[int, bool]:
    """The index just past the parenthesis closing the one open before `start`, and
    whether the arguments have a comma at their top level."""
    depth, quoted, comma, i = 1, False, False, start
    while depth:
        c = sql[i]
        if c == "'":
            quoted = not quoted
        elif not quoted:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 1:
                comma = True
        i += 1
    return i, comma


def _functions(sql: str) -> str:
    out: list[str] = []
    i = 0
    while (m := _CALL.search(sql, i)) is not None:
        end, comma = _close(sql, m.end())
        inner = _functions(sql[m.end():end - 1])
        name = m.group(1).upper()
        if name == "TOTAL":
            call = f"COALESCE(SUM({inner}), 0)"
        elif comma:
            call = f"{'GREATEST' if name == 'MAX' else 'LEAST'}({inner})"
        else:
            call = f"{m.group(1)}({inner})"
        out += [sql[i:m.start()], call]
        i = end
    out.append(sql[i:])
    return "".join(out)


def _placeholders(sql: str) -> str:
    out: list[str] = []
    quoted, n = False, 0
    for c in sql:
        if c == "'":
            quoted = not quoted
        elif c == "?" and not quoted:
            n += 1
            out.append(f"${n}")
            continue
        out.append(c)
    return "".join(out)


@lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    for sqlite_text, pg_text in _FRAGMENTS:
        sql = sql.replace(sqlite_text, pg_text)
    sql = _IS_PARAM.sub("IS NOT DISTINCT FROM ?", _functions(sql))
    return _placeholders(sql)
