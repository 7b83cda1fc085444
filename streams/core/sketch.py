"""A mergeable, subtractable quantile sketch with bounded relative error.

Durations (integer microseconds) fall into logarithmic buckets: bucket ``i`` holds values in
(gamma**(i-1), gamma**i] and reports ``2 * gamma**i / (gamma + 1)``, which is within
``RELATIVE_ACCURACY`` of every value in the bucket. Zero has its own bucket and is exact.

Unlike a plain DDSketch, counts can be *removed* again (a retracted measurement) and sketches
can be subtracted, which the sliding windows and the idempotent partial aggregates need. The
state is a plain ``dict[int, int]`` so it serializes with the aggregates it belongs to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping

RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
ZERO_KEY = 0

Sketch = dict[int, int]


def sketch_key(value_us: int) -> int:
    """Bucket key of a non-negative duration in microseconds."""
    if value_us <= 0:
        return ZERO_KEY
    # Keys start at 1 for 1 µs so that ZERO_KEY stays distinct.
    return math.ceil(math.log(value_us) / _LOG_GAMMA) + 1


def bucket_value_us(key: int) -> float:
    """The value (µs) a bucket reports: within RELATIVE_ACCURACY of everything in it."""
    if key == ZERO_KEY:
        return 0.0
    return 2.0 * _GAMMA ** (key - 1) / (_GAMMA + 1.0)


def add_value(sketch: MutableMapping[int, int], value_us: int, sign: int) -> None:
    """Add (sign=+1) or remove (sign=-1) one value."""
    key = sketch_key(value_us)
    count = sketch.get(key, 0) + sign
    if count:
        sketch[key] = count
    else:
        del sketch[key]


def merge_into(target: MutableMapping[int, int], other: Mapping[int, int], sign: int) -> None:
    """target += sign * other, dropping buckets that reach zero."""
    for key, n in other.items():
        count = target.get(key, 0) + sign * n
        if count:
            target[key] = count
        else:
            del target[key]


def nearest_rank(q_num: int, q_den: int, n: int) -> int:
    """1-based nearest rank ceil(q * n) for q = q_num / q_den, computed exactly."""
    return max(1, -((-q_num * n) // q_den))


def quantile_us(sketch: Mapping[int, int], q_num: int, q_den: int) -> float | None:
    """Nearest-rank quantile q = q_num/q_den of the sketch, or None when it is empty."""
    total = sum(sketch.values())
    if total <= 0:
        return None
    rank = nearest_rank(q_num, q_den, total)
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen >= rank:
            return bucket_value_us(key)
    raise AssertionError("unreachable: rank exceeds the sketch's count")
