"""DynamoDB capacity units of one call, estimated from the request, the response and the items
it touched (bench/counting_proxy.py --capacity), by the rules of DynamoDB's on-demand billing.

moto cannot say: asked for `ReturnConsumedCapacity: TOTAL` (moto 5.2) it answers a constant
per call (1.0, or 0.5 for a GetItem) whatever the items' sizes and the read's consistency, and
an empty list for TransactWriteItems. So the proxy reads the items itself, straight from moto
(uncounted), and sizes them:

- item size: the sum over attributes of the name's UTF-8 bytes plus the value's: a string its
  UTF-8 bytes, a binary its bytes, a number 1 byte per two significant digits plus 1, a boolean
  or null 1, a list or map 3 bytes plus its elements (each plus 1 byte), a set its members;
- reads: GetItem, BatchGetItem: each item's full size (a projection does not make it cheaper)
  in 4 KB steps, at least one; Query, Scan: the items the key condition matched (before any
  filter), summed, then in 4 KB steps; eventually consistent 0.5 a step, strongly 1;
  TransactGetItems 2;
- writes: PutItem, UpdateItem, DeleteItem: the larger of the item before and after, in 1 KB
  steps, at least 1 (a write whose condition failed still costs, for the item as it is);
  TransactWriteItems: 2 per step of each item; BatchWriteItem: each item as a PutItem.
"""

import base64
import math
from decimal import Decimal, InvalidOperation

KB = 1024


def number_size(text):
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return len(text)
    digits = d.as_tuple().digits
    s = "".join(map(str, digits)).strip("0") or "0"
    return math.ceil(len(s) / 2) + 1


def value_size(v):
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return number_size(x)
    if kind == "B":
        return len(base64.b64decode(x))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(number_size(n) for n in x)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in x)
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in x)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in x.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item):
    """Bytes of an item, as DynamoDB bills it (0 for no item)."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def read_units(size, consistent, factor=1.0):
    """Read units of reading `size` bytes at once: 4 KB steps, at least one."""
    steps = max(1, math.ceil(size / (4 * KB)))
    return steps * (1.0 if consistent else 0.5) * factor


def write_units(before, after, factor=1):
    """Write units of one item write: the larger of the item before and after, 1 KB steps."""
    return max(1, math.ceil(max(before, after) / KB)) * factor


if __name__ == "__main__":
    # The rules on items of known size: `python3 bench/ddb_capacity.py` checks them.
    assert number_size("1") == 2 and number_size("1795910400") == 5 and number_size("-12.50") == 3
    item = {"app_id": {"S": "com.bench.app#counters#0"}, "sk": {"S": "counter#production#1.0.1"},
            "n_set": {"N": "3"}, "ok": {"BOOL": True}, "m": {"M": {"a": {"S": "xy"}}},
            "l": {"L": [{"N": "10"}]}, "ss": {"SS": ["ab", "c"]}}
    # 6+24, 2+24, 5+2, 2+1, 1+(3+1+2+1), 1+(3+2+1), 2+3
    assert item_size(item) == 30 + 26 + 7 + 3 + 8 + 7 + 5, item_size(item)
    assert write_units(0, 1024) == 1 and write_units(1025, 10) == 2 and write_units(0, 0, 2) == 2
    assert read_units(0, False) == 0.5 and read_units(4097, True) == 2 and read_units(10, True, 2.0) == 2
    print("ok")
